"""Bench: import 1,000,000 families (~4.5 M person rows) from CSV into a fresh PostgreSQL database.

    .venv/bin/python loadtests/bench_import.py [--families 1000000] [--seed 1]

The CSV is generated deterministically (same seed, same bytes) under var/bench/ and reused. The import
runs as ``cardctl import families`` in a child process, so its peak RSS is the import's alone. Prints
``bench import_families_1m <n> families/s``, ``bench import_persons_1m <n> rows/s``, ``bench
import_seconds_1m <s> s`` and ``bench import_peak_rss <MB> MB``. PostgreSQL: ``CARD_BENCH_PG_URL`` or
``CARD_TEST_PG_URL`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from card_backend import nationalid  # noqa: E402
from card_backend.config import SYRIA_GOVERNORATES  # noqa: E402
from card_backend.imports.csvformat import COLUMNS  # noqa: E402

FIRST_M = ["محمد", "أحمد", "علي", "خالد", "عمر", "يوسف", "حسن", "إبراهيم", "سامر", "فادي"]
FIRST_F = ["فاطمة", "مريم", "زينب", "رنا", "هبة", "سارة", "ليلى", "نور", "آمنة", "ريم"]
LAST = ["الأحمد", "الحلبي", "الخطيب", "العلي", "الشامي", "الحمصي", "المصري", "النجار", "الحداد", "السيد"]
LATIN = {
    "محمد": "Mohammad",
    "أحمد": "Ahmad",
    "علي": "Ali",
    "خالد": "Khaled",
    "عمر": "Omar",
    "يوسف": "Yousef",
    "حسن": "Hasan",
    "إبراهيم": "Ibrahim",
    "سامر": "Samer",
    "فادي": "Fadi",
    "فاطمة": "Fatima",
    "مريم": "Maryam",
    "زينب": "Zainab",
    "رنا": "Rana",
    "هبة": "Hiba",
    "سارة": "Sara",
    "ليلى": "Layla",
    "نور": "Nour",
    "آمنة": "Amina",
    "ريم": "Reem",
    "الأحمد": "Al-Ahmad",
    "الحلبي": "Al-Halabi",
    "الخطيب": "Al-Khatib",
    "العلي": "Al-Ali",
    "الشامي": "Al-Shami",
    "الحمصي": "Al-Homsi",
    "المصري": "Al-Masri",
    "النجار": "Al-Najjar",
    "الحداد": "Al-Haddad",
    "السيد": "Al-Sayed",
}
SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
SIZE_WEIGHTS = [6, 11, 15, 20, 19, 13, 8, 4, 2, 2]


def generate(path: Path, families: int, seed: int) -> int:
    """Write the CSV; returns the number of person rows. One family's rows are consecutive."""
    rng = random.Random(seed)
    rows = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with tmp.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(COLUMNS) + "\n")
        for f in range(families):
            gov_no = f % len(SYRIA_GOVERNORATES) + 1
            gov = SYRIA_GOVERNORATES[gov_no - 1]
            last = rng.choice(LAST)
            size = rng.choices(SIZES, SIZE_WEIGHTS)[0]
            head_year = rng.randint(1945, 1998)
            book = f"B{seed:02d}{f:08d}"
            lines = []
            for m in range(size):
                rel = "head" if m == 0 else "spouse" if m == 1 else "child"
                sex = "M" if m == 0 or (m > 1 and rng.random() < 0.5) else "F"
                first = rng.choice(FIRST_M if sex == "M" else FIRST_F)
                year = head_year + (rng.randint(-5, 3) if m == 1 else rng.randint(20, 28) if m else 0)
                # scattered like real IDs (a bijection mod 10**7), so the unique index is not fed in order
                nid = nationalid.make(gov_no, (seed % 10) * 10_000_000 + (rows * 7919 + 12345) % 10_000_000)
                lines.append(
                    f"{book},{gov},حي {f % 97},09{f % 100_000_000:08d},{nid},{first},{last},{LATIN[first]},"
                    f"{LATIN[last]},{min(year, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
                    f"{sex},{rel}"
                )
                rows += 1
            out.write("\n".join(lines) + "\n")
    tmp.rename(path)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    label = "1m" if args.families == 1_000_000 else str(args.families)
    csv_path = ROOT / "var" / "bench" / f"families_{args.families}_s{args.seed}_v2.csv"
    if not csv_path.exists():
        t = time.perf_counter()
        generate(csv_path, args.families, args.seed)
        print(f"# generated {csv_path} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    with csv_path.open("rb") as fh:
        persons = sum(1 for _ in fh) - 1

    admin_url = os.environ.get("CARD_BENCH_PG_URL") or os.environ.get(
        "CARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    name = f"bench_import_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rpartition("/")[0] + "/" + name
    try:
        from card_backend.migrate import upgrade

        upgrade(url)
        env = {**os.environ, "CARD_DATABASE_URL": url, "CARD_LOG_JSON": "true"}
        cmd = [
            sys.executable,
            "-c",
            "from card_backend.cli import app; app()",
            "import",
            "families",
            str(csv_path),
        ]
        started = time.perf_counter()
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"import failed ({done.returncode})")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        with create_engine(url).connect() as conn:
            stored = conn.execute(
                text("SELECT (SELECT COUNT(*) FROM families), (SELECT COUNT(*) FROM persons)")
            ).one()
        assert tuple(stored) == (args.families, persons), stored
        print(f"bench import_families_{label} {args.families / seconds:.0f} families/s")
        print(f"bench import_persons_{label} {persons / seconds:.0f} rows/s")
        print(f"bench import_seconds_{label} {seconds:.1f} s")
        print(f"bench import_peak_rss {peak_mb:.0f} MB")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
