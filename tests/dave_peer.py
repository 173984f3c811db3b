"""The voice server's part of DAVE, for tests: an MLS external sender that
adds members to a call's group, so two local `davey` sessions (the bot's and a
speaker's) agree on keys as they do on Discord.

The framing is RFC 9420's, as the DAVE protocol uses it: the external sender
package (op 25) is an `ExternalSender` {signature key, basic credential}; a
proposal (op 27) is an `MLSMessage` holding a `PublicMessage` whose content is
an Add of the new member's key package, sent by the external sender (sender
type 2, index 0) for the group's current epoch and signed with ECDSA P-256 over
`SignContent {"MLS 1.0 FramedContentTBS", FramedContentTBS}` (external senders
sign no group context). The group id is the channel id, 8 bytes big-endian.
"""

from __future__ import annotations

import davey
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

MLS10, PUBLIC_MESSAGE, BASIC_CREDENTIAL = 1, 1, 1
SENDER_EXTERNAL, CONTENT_PROPOSAL, PROPOSAL_ADD = 2, 2, 1


def vec(data: bytes) -> bytes:
    """An MLS variable-length vector: a 1, 2 or 4 byte varint length, then the bytes."""
    n = len(data)
    if n < 1 << 6:
        return bytes([n]) + data
    if n < 1 << 14:
        return (0x4000 | n).to_bytes(2, "big") + data
    return (0x8000_0000 | n).to_bytes(4, "big") + data


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


class VoiceServer:
    """Adds each member's key package to the call's group, as Discord's voice server does."""

    def __init__(self, channel_id: int) -> None:
        self.group_id = channel_id.to_bytes(8, "big")
        self.key = ec.generate_private_key(ec.SECP256R1())
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.external_sender = vec(public) + u16(BASIC_CREDENTIAL) + vec(b"voice-server")

    def add_proposal(self, key_package: bytes, epoch: int) -> bytes:
        content = (
            vec(self.group_id)
            + epoch.to_bytes(8, "big")
            + bytes([SENDER_EXTERNAL])
            + (0).to_bytes(4, "big")
            + vec(b"")
            + bytes([CONTENT_PROPOSAL])
            + u16(PROPOSAL_ADD)
            + key_package
        )
        tbs = u16(MLS10) + u16(PUBLIC_MESSAGE) + content
        signature = self.key.sign(vec(b"MLS 1.0 FramedContentTBS") + vec(tbs), ec.ECDSA(hashes.SHA256()))
        return vec(u16(MLS10) + u16(PUBLIC_MESSAGE) + content + vec(signature))

    def call(self, first: davey.DaveSession, *others: davey.DaveSession) -> None:
        """`first` creates the group and commits the others' addition; they join by its welcome."""
        packages = [s.get_serialized_key_package() for s in others]
        first.get_serialized_key_package()
        for s in (first, *others):
            s.set_external_sender(self.external_sender)
        for package in packages:
            result = first.process_proposals(
                davey.ProposalsOperationType.append, self.add_proposal(package, first.epoch or 0)
            )
            first.process_commit(result.commit)
            for s in others:
                if not s.ready:
                    s.process_welcome(result.welcome)
