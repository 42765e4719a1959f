"""The real client for tests/miner.rs: bittensor 10.0.1's Dendrite calls the Rust axon.

Usage: python miner_dendrite.py wallet WALLETS_DIR NAME HOTKEY URI
           writes a Bittensor wallet hotkey file for a secret URI (as btcli would)
       python miner_dendrite.py call PORT MINER_SS58 OUT_JSON
           calls 127.0.0.1:PORT as //Alice for a 24 h and a 1 h BTC prompt, and once with a
           wrong axon hotkey; writes what the dendrite got (status, message, the parsed output)
           and this script's own run of the validator's format rules to OUT_JSON.
"""

import asyncio
import datetime
import json
import sys
import time
from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, WrapValidator

import bittensor as bt
from bittensor.utils import networking

# Dendrite() asks a public service for the external IP; offline, it is loopback.
networking.get_external_ip = lambda: "127.0.0.1"

from bittensor_wallet import Keypair, Wallet  # noqa: E402


class SimulationInput(BaseModel):
    """The SN50 prompt, with the validator's field names and defaults."""

    asset: str = "BTC"
    start_time: str = ""
    time_increment: int = 300
    time_length: int = 86400
    num_simulations: int = 1


def _none_if_invalid(value: Any, handler: Any) -> Any:
    try:
        return handler(value)
    except Exception:
        return value


class Simulation(bt.Synapse):
    """The SN50 synapse: its class name is the route, `/Simulation`."""

    simulation_input: SimulationInput
    simulation_output: Annotated[
        Optional[tuple[Union[int, list[Union[int, float]]], ...]],
        WrapValidator(_none_if_invalid),
    ] = None


def validator_format_check(output: Any, inp: SimulationInput) -> str:
    """The validator's format rules (response_validation_v2), applied independently here."""
    if output is None or not isinstance(output, (list, tuple)) or len(output) == 0:
        return "Response is empty or not a list"
    start = int(datetime.datetime.fromisoformat(inp.start_time).timestamp())
    if not isinstance(output[0], int) or output[0] != start:
        return f"start time {output[0]!r} != {start}"
    if not isinstance(output[1], int) or output[1] != inp.time_increment:
        return f"time increment {output[1]!r} != {inp.time_increment}"
    paths = output[2:]
    if len(paths) != inp.num_simulations:
        return f"{len(paths)} paths, expected {inp.num_simulations}"
    points = inp.time_length // inp.time_increment + 1
    for path in paths:
        if not isinstance(path, list) or len(path) != points:
            return f"a path has {len(path) if isinstance(path, list) else type(path)} points, expected {points}"
        for p in path:
            if not isinstance(p, (int, float)):
                return f"price {p!r} is not a number"
            if len(str(p).replace(".", "")) > 8:
                return f"too many digits {p}"
            if p == 0:
                return "a zero price"
    return "CORRECT"


def start_time_in(seconds: int) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    start = (now + datetime.timedelta(seconds=seconds)).replace(second=0)
    return start.isoformat()


async def call(port: int, miner_ss58: str, out_path: str) -> None:
    alice = Keypair.create_from_uri("//Alice")
    dendrite = bt.Dendrite(wallet=alice)
    results = {}
    try:
        cases = [
            ("low", miner_ss58, 300, 86400),
            ("high", miner_ss58, 60, 3600),
            # Right server, wrong idea of its hotkey: the signature is for another axon.
            ("wrong_hotkey", Keypair.create_from_uri("//Charlie").ss58_address, 60, 3600),
        ]
        for name, axon_hotkey, inc, length in cases:
            info = bt.AxonInfo(
                version=10000001, ip="127.0.0.1", port=port, ip_type=4,
                hotkey=axon_hotkey, coldkey=axon_hotkey, protocol=4,
                placeholder1=0, placeholder2=0,
            )
            inp = SimulationInput(
                asset="BTC", start_time=start_time_in(120), time_increment=inc,
                time_length=length, num_simulations=1000,
            )
            t0 = time.time()
            out = await dendrite.forward(
                axons=[info], synapse=Simulation(simulation_input=inp), timeout=90,
                deserialize=False,
            )
            s = out[0]
            results[name] = {
                "status_code": s.dendrite.status_code,
                "status_message": s.dendrite.status_message,
                "process_time": s.dendrite.process_time,
                "seconds": time.time() - t0,
                "simulation_input": s.simulation_input.model_dump(),
                "simulation_output": list(s.simulation_output) if s.simulation_output else None,
                "python_format_check": validator_format_check(s.simulation_output, inp),
            }
    finally:
        await dendrite.aclose_session()
    with open(out_path, "w") as f:
        json.dump(results, f)


def main() -> None:
    if sys.argv[1] == "wallet":
        _, _, path, name, hotkey, uri = sys.argv
        w = Wallet(name=name, hotkey=hotkey, path=path)
        w.set_hotkey(Keypair.create_from_uri(uri), encrypt=False, overwrite=True)
        print(w.hotkey.ss58_address)
    elif sys.argv[1] == "call":
        _, _, port, miner_ss58, out_path = sys.argv
        asyncio.run(call(int(port), miner_ss58, out_path))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")


if __name__ == "__main__":
    main()
