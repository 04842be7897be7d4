"""Writes two image layers with Python's tarfile, named the ways other builders name members.

Usage: tarfile_layers.py BUSYBOX OUT_DIR

layer1.tar: `./`-prefixed names (what `tar -C rootfs .` writes), with a `.`
root member and hard links whose targets are `./` and absolute names.
layer2.tar: absolute names with a `/` root member, a whiteout, and a stream
that ends right after its last member's data, with neither the padding to a
512-byte block nor the end-of-archive blocks (as umoci 0.4 writes layers).
"""

import io
import os
import sys
import tarfile


def member(tar, name, kind=tarfile.REGTYPE, data=b"", mode=0o644, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1_600_000_000
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return info


def main():
    busybox, out = sys.argv[1:3]
    with open(busybox, "rb") as f:
        bb = f.read()
    with tarfile.open(os.path.join(out, "layer1.tar"), "w", format=tarfile.GNU_FORMAT) as t:
        member(t, "./", tarfile.DIRTYPE, mode=0o755)
        member(t, "./bin/", tarfile.DIRTYPE, mode=0o755)
        member(t, "./bin/busybox", data=bb, mode=0o755)
        member(t, "./bin/sh", tarfile.LNKTYPE, link="./bin/busybox")
        member(t, "/bin/cat", tarfile.LNKTYPE, link="/bin/busybox")
        member(t, "bin/test", tarfile.LNKTYPE, link="bin/busybox")
        member(t, "bin/sleep", tarfile.LNKTYPE, link="bin/busybox")
        member(t, "./bin/echo", tarfile.SYMTYPE, link="busybox", mode=0o777)
        member(t, "./etc/", tarfile.DIRTYPE, mode=0o755)
        member(t, "./etc/motd", data=b"layer one\n")
        member(t, "./etc/gone", data=b"whited out by layer two\n")
        member(t, "./tmp/", tarfile.DIRTYPE, mode=0o1777)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        member(t, "/", tarfile.DIRTYPE, mode=0o755)
        member(t, "/etc/", tarfile.DIRTYPE, mode=0o755)
        member(t, "/etc/.wh.gone")
        last = member(t, "/etc/motd", data=b"absolute names\n")
    raw = buf.getvalue()
    # Cut right after the last member's data (tarfile computes where it starts).
    offset = raw.index(b"absolute names\n")
    end = offset + len(b"absolute names\n")
    assert end % 512 != 0 and last.size == 15
    with open(os.path.join(out, "layer2.tar"), "wb") as f:
        f.write(raw[:end])


if __name__ == "__main__":
    main()
