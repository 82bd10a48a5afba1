"""JetStream streams read straight from NATS, independently of the daemons that wrote them."""

from __future__ import annotations

import asyncio

import nats

from stockctl.marketdata.money import to_units
from stockctl.wire import names
from stockctl.wire.marketdata import tick_decoder


def read_stream(url: str, stream: str, subjects: str) -> list[bytes]:
    """Every message of ``stream`` on ``subjects``, oldest first, read straight from JetStream."""

    async def read() -> list[bytes]:
        nc = await nats.connect(url)
        js = nc.jetstream()
        out: list[bytes] = []
        seq = 1
        try:
            while True:
                try:
                    raw = await js.get_msg(stream, seq=seq, subject=subjects, next=True)
                except nats.js.errors.NotFoundError:
                    break
                out.append(raw.data)
                seq = raw.seq + 1
        finally:
            await nc.close()
        return out

    return asyncio.run(read())


def stream_ticks(nats_url: str) -> set[tuple[str, int, int, int, int]]:
    """Every tick in MD_TICKS as (symbol, seq, ts, price units, volume), read independently."""

    async def read() -> set[tuple[str, int, int, int, int]]:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        info = await js.stream_info(names.TICK_STREAM)
        out: set[tuple[str, int, int, int, int]] = set()
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            t = tick_decoder.decode((await js.get_msg(names.TICK_STREAM, seq)).data)
            out.add((t.symbol, t.seq, t.ts, to_units(t.price), t.volume))
        await nc.close()
        return out

    return asyncio.run(read())
