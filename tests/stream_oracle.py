"""Test models for the stream world whose right answer is known.

`OracleUNet` returns the exact noise in its input for a known clean picture,
so a correct denoising loop reproduces that picture to float precision, and a
wrong coefficient, sign or noise level shows. `contrast_vae` makes a tiny
random TAESD whose picture depends on its latent: PyTorch's default init
shrinks the signal about 2.5x per layer, so an untrained decoder draws much
the same picture whatever it is given.
"""

from __future__ import annotations

import torch


class OracleUNet(torch.nn.Module):
    """A UNet that knows the answer: the noise in its input, for the clean picture `target`.

    Bound to an engine (`bind`), at the engine's own timesteps it returns the
    noise the engine put in (the row of its fixed noise buffer for that
    timestep): the clean estimate is then exactly the latent that was noised,
    whatever it was, and only if it was noised at the level the timestep says.
    At any other timestep (txt2img's pure noise), and before binding, it returns
    the noise the input holds if its clean picture is `target`.
    """

    def __init__(self, like: torch.nn.Module, scheduler, target: torch.Tensor) -> None:
        super().__init__()
        self.config = like.config  # what the engine reads: channels, block sizes, conditioning kinds
        self.weight = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # a device and dtype to follow
        self.register_buffer("target", target.clone())
        self.register_buffer("acp", scheduler.alphas_cumprod.to(torch.float64))
        self.engine = None
        self.seen: list[torch.Tensor] = []  # the conditioning of each call

    def bind(self, engine) -> OracleUNet:
        self.engine = engine
        return self

    def forward(self, sample, timestep, encoder_hidden_states=None, return_dict=False, **kwargs):
        self.seen.append(encoder_hidden_states[:1].clone())
        ts = timestep.reshape(-1).expand(sample.shape[0]).tolist()
        out = torch.empty_like(sample)
        for row, t in enumerate(ts):
            known = [] if self.engine is None else (self.engine.timesteps == int(t)).nonzero().flatten().tolist()
            if known:
                out[row] = self.engine.noise[known[0]]
            else:
                a, b = self.acp[int(t)].sqrt(), (1 - self.acp[int(t)]).sqrt()
                out[row] = ((sample[row].double() - a * self.target[0].double()) / b).to(sample.dtype)
        return (out,)


def contrast_vae(vae: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """`vae` (a tiny AutoencoderTiny) re-initialised so its picture follows its latent (He init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
        # scale the last layer so unit latents decode to a picture with a spread of about 0.5 in [-1, 1]
        probe = torch.randn((1, vae.config.latent_channels, 8, 8), generator=g)
        spread = vae.decode(probe, return_dict=False)[0].std()
        vae.decoder.layers[-1].weight.mul_(0.5 / spread)
    return vae
