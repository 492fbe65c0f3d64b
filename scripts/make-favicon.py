#!/usr/bin/env python3
"""Writes static/favicon.ico (16x16 and 32x32, 32-bit BMP entries) from the geometry of
static/favicon.svg: a #0066cc rounded square (rx 6 of 32), a white bar (x 6-10, y 8-24)
and a white ring (centre 20,16, radius 4-8). No dependencies: 4x4 supersampling."""
import struct
import sys


def pixel(x, y, n):
    fg = bg = 0
    s = 4
    for i in range(s):
        for j in range(s):
            u = (x + (i + .5) / s) * 32 / n
            v = (y + (j + .5) / s) * 32 / n
            cx, cy = min(max(u, 6), 26), min(max(v, 6), 26)
            if (u - cx) ** 2 + (v - cy) ** 2 > 36:
                continue
            bg += 1
            bar = 6 <= u <= 10 and 8 <= v <= 24
            ring = 4 <= ((u - 20) ** 2 + (v - 16) ** 2) ** .5 <= 8
            fg += bar or ring
    if bg == 0:
        return (0, 0, 0, 0)
    f = fg / bg
    mix = lambda c: round(c * (1 - f) + 255 * f)
    return (mix(0xcc), mix(0x66), mix(0x00), round(bg / (s * s) * 255))  # BGRA


def image(n):
    xor = b"".join(
        b"".join(bytes(pixel(x, y, n)) for x in range(n)) for y in range(n - 1, -1, -1)
    )
    andmask = b"\x00" * (((n + 31) // 32) * 4 * n)
    header = struct.pack("<IiiHHIIiiII", 40, n, 2 * n, 1, 32, 0, len(xor) + len(andmask), 0, 0, 0, 0)
    return header + xor + andmask


def main(out):
    sizes = (16, 32)
    images = [image(n) for n in sizes]
    data = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    for n, img in zip(sizes, images):
        data += struct.pack("<BBBBHHII", n, n, 0, 0, 1, 32, len(img), offset)
        offset += len(img)
    with open(out, "wb") as f:
        f.write(data + b"".join(images))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "static/favicon.ico")
