"""`loyalty-bridge run` as systemd runs it: a real subprocess, signalled mid-cycle.

The first SIGTERM lets the document in hand finish and the process exit 0; nothing is half
written (every applied order has its processed version, ledger rows and outbox rows together);
the next run picks up exactly where the stopped one left off. The health endpoint answers while
it runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from bridge.simulator import SimStore, Simulator, generate, load_reference
from bridge.simulator.site import SiteReceiver
from tests.e2e.cycle_kit import SECRET, config_data, config_yaml

UNPROCESSED = (
    "select count(*) from orders o where not exists (select 1 from processed p where p.doc_id = o.id)"
)
ORPHANS = (
    "select count(*) from entries e where e.order_id is not null "
    "and not exists (select 1 from orders o where o.id = e.order_id)"
)
TWICE = (
    "select count(*) from (select order_id from entries where kind = 'accrue' "
    "group by order_id having count(*) > 1)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def count(db: Path, sql: str) -> int:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)
    finally:
        engine.dispose()


def test_sigterm_mid_cycle_finishes_the_document_in_hand_and_exits_0(tmp_path: Path) -> None:
    store = SimStore()
    load_reference(store)
    generate(store, customers=40, orders=300, seed=5, start=datetime(2026, 1, 1), days=60)
    port = free_port()
    with Simulator(store) as sim, SiteReceiver(SECRET) as site:
        sim.faults.rate(1.0, kinds=["delay"], seed=1, seconds=0.01)  # a slow 1C: the cycle takes a while
        db = tmp_path / "state.db"
        data = config_data(sim, site, db)
        data["poll"].update({"interval_s": 1, "start": "2026-01-01T00:00:00"})
        data["http"] = {"listen": f"127.0.0.1:{port}"}
        data["log"] = {"level": "info", "format": "json"}
        cfg = tmp_path / "config.yaml"
        cfg.write_text(config_yaml(data), "utf-8")
        env = {**os.environ, "ONEC_PASSWORD": sim.password, "SITE_WEBHOOK_SECRET": SECRET}
        subprocess.run(
            [sys.executable, "-m", "bridge", "db", "upgrade", "--config", str(cfg)], env=env, check=True
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--config", str(cfg)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while count(db, "select count(*) from orders") < 20 and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                assert b"cycle" in answer.read()
            applied_before = count(db, "select count(*) from orders")
            assert applied_before < 300, "the cycle finished before the signal: make 1C slower"
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err[-2000:]
        events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert any("stop" in str(e.get("event", "")).lower() for e in events), err[-2000:]
        # Nothing half written: every applied order is marked processed, no orphan entries.
        applied = count(db, "select count(*) from orders")
        assert applied >= applied_before
        assert count(db, UNPROCESSED) == 0
        assert count(db, ORPHANS) == 0
        # A new run picks up the rest; nothing is applied twice.
        sim.faults.clear()
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "once", "--config", str(cfg)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode in (0, 1), done.stderr[-2000:]
        assert count(db, "select count(*) from orders") == 300
        assert count(db, TWICE) == 0
