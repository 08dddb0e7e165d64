"""Hex as tools print it (no tests here): shared by the evasion table and the extractor's unit tests.

    hex_sep(sep, upper=False)(t)   the bytes as pairs with `sep` between them (`bytes.hex(sep)`, `67:68`)
    c_array(t)                     `xxd -i`: `0x67, 0x68,` 12 a line
    openssl_wrapped(t)             `openssl x509 -text`: 15 colon-separated bytes a line, indented
    hex_dump(style)(t)             a dump of `export TOKEN=<t>` with offsets: xxd, hexdump-C, od-x1, od-x, wireshark
"""

from __future__ import annotations


def b(x: str | bytes) -> bytes:
    return x.encode("latin-1") if isinstance(x, str) else x


def hex_sep(sep: str, upper: bool = False):
    """The token's bytes as hex pairs with `sep` between them (`bytes.hex(sep)`, MAC-style `67:68`)."""
    return lambda t: sep.join(f"{c:02X}" if upper else f"{c:02x}" for c in b(t))


def c_array(t: str | bytes) -> str:
    """`xxd -i`: a C array, 12 bytes a line."""
    data = b(t)
    rows = [", ".join(f"0x{c:02x}" for c in data[i:i + 12]) for i in range(0, len(data), 12)]
    return "unsigned char key[] = {\n  " + ",\n  ".join(rows) + "\n};\n"


def openssl_wrapped(t: str | bytes) -> str:
    """`openssl x509 -text` style: 15 colon-separated bytes a line, indented, a colon ending every full line."""
    data = b(t)
    rows = [":".join(f"{c:02x}" for c in data[i:i + 15]) for i in range(0, len(data), 15)]
    return "        Modulus:\n" + ":\n".join("            " + r for r in rows) + "\n"


def hex_dump(style: str):
    """A dump of `export TOKEN=<token>`, 16 bytes a line with offsets, as `style` prints it."""
    def dump(t: str | bytes) -> str:
        data = b"export TOKEN=" + b(t) + b"\n"
        lines = []
        for off in range(0, len(data), 16):
            row = data[off:off + 16]
            text = "".join(chr(c) if 32 <= c < 127 else "." for c in row)
            pairs = [f"{c:02x}" for c in row]
            if style == "xxd":
                groups = " ".join("".join(pairs[i:i + 2]) for i in range(0, len(pairs), 2))
                lines.append(f"{off:08x}: {groups:<39}  {text}")
            elif style == "hexdump-C":
                lines.append(f"{off:08x}  {' '.join(pairs[:8]):<23}  {' '.join(pairs[8:]):<23}  |{text}|")
            elif style == "od-x1":
                lines.append(f"{off:07o} " + " ".join(pairs))
            elif style == "od-x":  # 2-byte words, little-endian
                row = row + b"\0" * (len(row) % 2)
                lines.append(f"{off:07o} " + " ".join(f"{row[i + 1]:02x}{row[i]:02x}" for i in range(0, len(row), 2)))
            else:  # wireshark
                lines.append(f"{off:04x}   {' '.join(pairs):<47}   {text}")
        return "\n".join(lines) + "\n"

    return dump
