"""A Discord user as the show sees them: a viewer with the roles that count,
and their text as Discord shows it. The bot's Cogs and its voice Cogs both use these.
"""

from __future__ import annotations

import discord

from ..viewer import Viewer


def plain(text: str) -> str:
    """A viewer's text as Discord shows it: no markdown, mentions as plain text."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def viewer_from(user: discord.abc.User, moderator_roles: list[str], *, trusted: bool) -> Viewer:
    """A Discord member as a viewer; roles count only in the show's own servers (`trusted`)."""
    roles = {"viewer"}
    if trusted and isinstance(user, discord.Member):
        names = {r.name.lower() for r in user.roles}
        perms = user.guild_permissions
        if names & {m.lower() for m in moderator_roles} or perms.manage_guild or perms.administrator:
            roles.add("moderator")
        if user.guild.owner_id == user.id:
            roles.add("broadcaster")
        if user.premium_since is not None:
            roles.add("subscriber")  # a server booster
    return Viewer("discord", user.name, frozenset(roles), str(user.id))
