#!/usr/bin/env python3
"""Turns a tcpdump capture (Ethernet link type) of VRRP packets into a vector file body:
one line per distinct packet, `SRC DST TTL_OR_HOP_LIMIT HEX_OF_VRRP_MESSAGE`.
Used by capture.sh's author by hand: python3 pcap2vec.py FILE.pcap"""
import ipaddress
import struct
import sys


def records(data):
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    assert linktype == 1, "expected Ethernet captures"
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8 : off + 12])[0]
        yield data[off + 16 : off + 16 + incl]
        off += 16 + incl


def vrrp_of(frame):
    ethertype = struct.unpack(">H", frame[12:14])[0]
    ip = frame[14:]
    if ethertype == 0x0800:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        assert ip[9] == 112
        src, dst = ipaddress.IPv4Address(ip[12:16]), ipaddress.IPv4Address(ip[16:20])
        return src, dst, ip[8], ip[ihl:total]
    assert ethertype == 0x86DD and ip[6] == 112, "no extension headers expected"
    plen = struct.unpack(">H", ip[4:6])[0]
    src, dst = ipaddress.IPv6Address(ip[8:24]), ipaddress.IPv6Address(ip[24:40])
    return src, dst, ip[7], ip[40 : 40 + plen]


seen = []
for frame in records(open(sys.argv[1], "rb").read()):
    line = "{} {} {} {}".format(*vrrp_of(frame)[:3], vrrp_of(frame)[3].hex())
    if line not in seen:
        seen.append(line)
print("\n".join(seen))
