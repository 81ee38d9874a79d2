"""``python -m bridge.simulator``: serve the sample (and optionally generated orders) until Ctrl+C.

For trying the bridge by hand; the ``demo`` command and tests start ``Simulator`` in-process.
Must not import anything of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

import argparse
import time

from bridge.simulator import SimStore, Simulator, build_schema, generate, load_sample


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge.simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--variant", choices=("11.5", "11.4"), default="11.5")
    parser.add_argument("--customers", type=int, default=0, help="generated customers on top of the sample")
    parser.add_argument("--orders", type=int, default=0, help="generated orders on top of the sample")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    store = SimStore(build_schema(args.variant))
    load_sample(store)
    if args.orders or args.customers:
        generate(store, customers=max(args.customers, 1), orders=args.orders, seed=args.seed)
    with Simulator(store, port=args.port) as sim:
        print(f"1C simulator (UT {args.variant}) at {sim.odata_url}")
        print(f"user {sim.username!r}, password {sim.password!r}; Ctrl+C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
