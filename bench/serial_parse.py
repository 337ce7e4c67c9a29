"""Serial parse benchmark: frames/s per protocol against a bare bytes scan.

Each protocol's framer is fed a stream of its typical frames (from tests/vectors, with a
little noise between some of them) in 64-byte chunks, as a UART read delivers them.
Baseline, in the same run on the same stream sizes: the least any framer must do, append
each chunk to a buffer and scan it for a sync pattern with ``bytearray.find`` (no
decoding). The ratio baseline / protocol (bytes/s) says what framing plus decoding costs.

    python bench/serial_parse.py [--frames 20000] [--chunk 64] [--repeat 5]

The last line is a JSON object: frames_per_s and bytes_per_s keyed by protocol,
baseline_bytes_per_s, ratio_baseline_over_protocol, headroom_vs_line_rate (parse speed
over the port's byte rate at its default baud: how many such ports one core keeps up
with), the chunk size and frame counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivers.serial.protocol import PROTOCOLS  # noqa: E402 - after the sys.path line

VECTORS = ROOT / "tests" / "vectors"
NOISE = bytes(range(0x80, 0x90))


def stream_for(device: str, n_frames: int) -> tuple[bytes, int]:
    frames = []
    for path in sorted((VECTORS / device).glob("*.json")):
        vec = json.loads(path.read_text(encoding="utf-8"))
        if "expected" not in vec:
            continue
        frames.append(bytes.fromhex(vec["hex"]) if "hex" in vec else vec["line"].encode() + b"\r\n")
    out = bytearray()
    for i in range(n_frames):
        if i % 10 == 0 and device not in ("rflink", "rtl433"):
            out += NOISE
        out += frames[i % len(frames)]
    return bytes(out), n_frames


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def time_protocol(name: str, parts: list[bytes], repeat: int) -> tuple[float, int]:
    best = float("inf")
    count = 0
    for _ in range(repeat):
        framer = PROTOCOLS[name].framer()
        t0 = time.perf_counter()
        n = 0
        for c in parts:
            n += len(framer.feed(c))
        best = min(best, time.perf_counter() - t0)
        count = n
    return best, count


def time_baseline(parts: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        buf = bytearray()
        t0 = time.perf_counter()
        hits = 0
        for c in parts:
            buf += c
            pos = buf.find(b"\xf4\xf3")
            while pos >= 0:
                hits += 1
                pos = buf.find(b"\xf4\xf3", pos + 2)
            del buf[:]
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000, help="frames per protocol")
    ap.add_argument("--chunk", type=int, default=64, help="bytes per feed() call")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (best is kept)")
    args = ap.parse_args()

    devices = {"ld2410": "ld2410", "mr60fda2": "mr60fda2", "mr60bha2": "mr60bha2",
               "rflink": "rflink", "rtl433": "rtl433", "bedpad": "bedpad"}
    frames_per_s: dict[str, float] = {}
    bytes_per_s: dict[str, float] = {}
    ratio: dict[str, float] = {}
    headroom: dict[str, float] = {}
    baselines: list[float] = []
    for name, device in devices.items():
        data, n = stream_for(device, args.frames)
        parts = chunks(data, args.chunk)
        base = time_baseline(parts, args.repeat)
        elapsed, got = time_protocol(name, parts, args.repeat)
        if got != n:
            raise SystemExit(f"{name}: decoded {got} frames, expected {n}")
        frames_per_s[name] = round(n / elapsed, 1)
        bytes_per_s[name] = round(len(data) / elapsed, 1)
        base_bps = len(data) / base
        baselines.append(base_bps)
        ratio[name] = round(base_bps / bytes_per_s[name], 2)
        # 8N1: ten bit times per byte at the protocol's default baud rate.
        headroom[name] = round(bytes_per_s[name] / (PROTOCOLS[name].baud / 10), 1)
        print(f"{name:9s} {frames_per_s[name]:>12,.0f} frames/s {bytes_per_s[name]:>14,.0f} B/s"
              f"   baseline {base_bps:>14,.0f} B/s   ratio {ratio[name]}")
    result = {
        "frames_per_s": frames_per_s,
        "bytes_per_s": bytes_per_s,
        "baseline_bytes_per_s": round(statistics.median(baselines), 1),
        "ratio_baseline_over_protocol": ratio,
        "headroom_vs_line_rate": headroom,
        "chunk_bytes": args.chunk,
        "frames_per_protocol": args.frames,
        "python": sys.version.split()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
