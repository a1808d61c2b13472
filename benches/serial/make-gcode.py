#!/usr/bin/env python3
"""Short-segment G-code for the serial benchmark (serial-benchmark.md).

    make-gcode.py MOVES [--motion-free] [--per-turn N] > file.gcode

MOVES short extruding moves at F6000 around a 40 mm circle, N per turn (default 400: 0.3 mm
segments; 60 gives 2 mm ones), a 0.2 mm layer per turn, as a slicer writes curved walls. `--motion-free` puts `M220 S10000` and `M221 S10000` first:
the Virtual Printer then no longer sleeps for the moves, so the host path itself is measured.
"""
import math
import sys


def main():
    moves = int(sys.argv[1])
    motion_free = "--motion-free" in sys.argv[2:]
    per_turn = int(sys.argv[sys.argv.index("--per-turn") + 1]) if "--per-turn" in sys.argv else 400
    out = ["; serial benchmark: short segments", "G90", "M83", "G92 E0"]
    if motion_free:
        out += ["M220 S10000", "M221 S10000"]
    out += ["G28", "G1 Z0.2 F3000"]
    r, cx, cy, z = 20.0, 100.0, 100.0, 0.2
    for i in range(moves):
        if i and i % per_turn == 0:
            z += 0.2
            out.append(";LAYER_CHANGE")
            out.append(f"G1 Z{z:.2f} F3000")
        a = (i % per_turn) * 2 * math.pi / per_turn
        out.append(f"G1 X{cx + r * math.cos(a):.3f} Y{cy + r * math.sin(a):.3f} E{0.01047 * 400 / per_turn:.5f} F6000")
    out += ["G1 E-1 F2400", "M84", "; end"]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
