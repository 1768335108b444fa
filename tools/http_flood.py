"""Idle-connection flood against a running node's HTTP bridge (loopback only).

Opens TOTAL idle TCP connections from 127.0.x.y sources (500 per source, under
the default per-source cap of 512) to the bridge at 127.0.0.1:PORT and keeps
them open; after every 1,000 it times a fresh `/health` plus an authenticated
deposit from 127.0.0.1. Prints one JSON line: connections opened, closed by the
node (displaced or past the header deadline), probes answered and their latency.

    fixit token issue --role admin --sub 0 --ttl-s 3600 --config node.toml > admin.tok
    python3 tools/http_flood.py 19000 [PORT]

Bounded: TOTAL connections, then it exits (closing them all).
"""
import asyncio, socket, time, sys, resource, json, urllib.request
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
TARGET = ("127.0.0.1", PORT)
TOTAL = int(sys.argv[1])
TOKEN = open("admin.tok").read().strip()
held = []
lat = []
def probe():
    t = time.perf_counter()
    urllib.request.urlopen("http://127.0.0.1:%d/health" % PORT, timeout=5).read()
    req = urllib.request.Request("http://127.0.0.1:%d/v1/wallets/1/deposit" % PORT, data=json.dumps({"key": "k%d" % len(lat), "amount": 1}).encode(), headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()
    return time.perf_counter() - t
start = time.time()
failed_probes = 0
for i in range(TOTAL):
    src = "127.0.%d.%d" % (1 + i // 500 // 250, 2 + (i // 500) % 250)
    s = socket.socket(); s.setblocking(True)
    try:
        s.bind((src, 0)); s.connect(TARGET); held.append(s)
    except OSError as e:
        s.close(); print("connect failed at", i, e); break
    if i % 1000 == 999:
        try: lat.append(probe())
        except Exception as e: failed_probes += 1; print("probe failed", e)
# count closed by server
closed = 0
for s in held:
    s.setblocking(False)
    try:
        d = s.recv(1)
        if d == b"": closed += 1
    except BlockingIOError: pass
    except OSError: closed += 1
print(json.dumps({"opened": len(held), "closed_by_server": closed, "probes": len(lat), "failed_probes": failed_probes, "probe_max_ms": round(max(lat)*1000,1) if lat else None, "probe_p50_ms": round(sorted(lat)[len(lat)//2]*1000,1) if lat else None, "seconds": round(time.time()-start,1)}))
