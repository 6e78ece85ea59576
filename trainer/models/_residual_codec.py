"""Shared layout of the residual variants: they differ only in the block placed after each resolution change."""

from __future__ import annotations

from typing import Callable

from torch import nn

from trainer.models.layers import ConvBlock, UpBlock, conv

BlockFactory = Callable[[int], nn.Module]


def widths(base_channels: int) -> list[int]:
    """Channel width per stage (1/2, 1/4, 1/8, 1/16 resolution)."""
    return [base_channels, 2 * base_channels, 2 * base_channels, 4 * base_channels]


def build_encoder(block: BlockFactory, latent_channels: int, base_channels: int, blocks_per_stage: int = 1) -> nn.Module:
    w = widths(base_channels)
    layers: list[nn.Module] = [ConvBlock(1, w[0], 5, stride=2)]
    layers += [block(w[0]) for _ in range(blocks_per_stage)]
    for cin, cout in zip(w[:-1], w[1:]):
        layers.append(ConvBlock(cin, cout, 3, stride=2))
        layers += [block(cout) for _ in range(blocks_per_stage)]
    layers.append(conv(w[-1], latent_channels, 3))  # unbounded latent: no activation
    return nn.Sequential(*layers)


def build_decoder(block: BlockFactory, latent_channels: int, base_channels: int, blocks_per_stage: int = 1) -> nn.Module:
    w = widths(base_channels)[::-1]
    layers: list[nn.Module] = [ConvBlock(latent_channels, w[0], 3)]
    for cin, cout in zip(w[:-1], w[1:]):
        layers += [block(cin) for _ in range(blocks_per_stage)]
        layers.append(UpBlock(cin, cout, 3))
    layers += [block(w[-1]) for _ in range(blocks_per_stage)]
    layers += [UpBlock(w[-1], w[-1], 3), conv(w[-1], 1, 3), nn.Sigmoid()]
    return nn.Sequential(*layers)
