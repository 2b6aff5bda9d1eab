"""One measurement in a fresh process: `python -m bench.measure SPEC.json`, prints one JSON line.

Run by `python -m bench` (never imported by it), so that each measurement's peak RSS (VmHWM,
`bench/process.py`) is its own: imports, buffers and allocator state of one measurement cannot
inflate another's.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from azure.storage.blob import BlobServiceClient

import exporter  # noqa: F401  first, as in the Functions worker: it picks Arrow's allocator before pyarrow loads
from exporter.clock import ManualClock
from exporter.context import Context
from exporter.destinations.azure_blob import block_id
from exporter.export import runner
from exporter.export.csv_writer import BLOCK_BYTES
from exporter.jobs import ExportJob, process_job
from exporter.settings import Settings
from exporter.storage import BLOB_CONNECTIONS, STORAGE_SDK_TRANSPORT, pooled_transport
from exporter.ucd import reader as ucd_reader
from exporter.ucd.claims import claim_partition
from exporter.ucd.segments import FIXED_COLUMNS, LAYOUT_KEY, segment_batches, wanted_slices
from exporter.ucd.tables import TRANSACTION_SIZE, WORKERS

from . import data, scale
from .process import rss_mb, ru_maxrss_mb, server_cpu


def _settings(spec: dict[str, Any]) -> Settings:
    return Settings(
        storage_connection=spec["connection"],
        table_prefix=spec["table_prefix"],
        queue_name=spec["queue"],
        ucd_container=spec["ucd_container"],
        secret_key=spec["secret_key"],
    )


def _window(spec: dict[str, Any]) -> tuple[datetime, datetime]:
    frequency = spec.get("frequency_hours", 1)
    if spec.get("empty"):  # the job's fixed start cost: a window a day before any stored event (header only)
        start = data.T0 - timedelta(days=1) + timedelta(minutes=30)
        return start, start + timedelta(hours=frequency)
    if "window_start" in spec:  # the large window (bench/scale.py): its own hour
        start = datetime.fromisoformat(spec["window_start"])
        return start, start + timedelta(hours=frequency)
    return data.window_bounds(spec["hours"], frequency)


def _segment_paths(ctx: Context, spec: dict[str, Any]) -> list[str]:
    start, end = _window(spec)
    return [ref.path for ref in ctx.ucd.segments(spec["account"], start, end)]


# ---------------------------------------------------------------- 1, 4, 5: the project's export


def export(spec: dict[str, Any]) -> dict[str, Any]:
    """`process_job` on a fresh integration whose only due window is the benchmark window."""
    frequency = spec.get("frequency_hours", 1)
    start, end = _window(spec)
    # `warm`: the integration's window before goes first, untimed, in this process (imports, connections, the
    # destination's kept credentials): the start cost as a running worker pays it, job after job.
    clock = ManualClock(start - timedelta(hours=frequency) if spec.get("warm") else start)
    ctx = Context.create(_settings(spec), clock)
    body = {
        "name": f"bench {frequency}h",
        "destination": spec.get("destination")
        or {
            "type": "azure_blob",
            "connection_string": spec["connection"],
            "container": spec["out_container"],
            "prefix": spec.get("prefix", "bench/"),
        },
        "events": data.SELECTION_EVENTS,
        "attributes": data.SELECTION_ATTRIBUTES,
        "frequency_hours": frequency,
        "status": "active",
        **{k: spec[k] for k in ("format", "manifest") if k in spec},  # bench/formats.py
    }
    integration = ctx.integrations.create(spec["account"], body)
    if spec.get("warm"):
        clock.set(start + timedelta(seconds=ctx.settings.settle_seconds + 1))
        process_job(ctx, ExportJob(spec["account"], integration["id"]).to_message())
    clock.set(end + timedelta(seconds=ctx.settings.settle_seconds + 1))
    job = ExportJob(spec["account"], integration["id"]).to_message()
    rss_before = rss_mb()
    profiler = None
    if spec.get("profile"):
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    trips = _traced_round_trips() if spec.get("trace") else None
    cpu0, server0 = time.process_time(), server_cpu(spec)
    t0 = time.perf_counter()
    result = process_job(ctx, job).to_json()
    seconds = time.perf_counter() - t0
    cpu, server = time.process_time() - cpu0, server_cpu(spec) - server0
    if profiler is not None:
        profiler.stop()
        out = Path(spec["profile"])
        out.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
        (out.with_suffix(".html")).write_text(profiler.output_html())
    peak = rss_mb()
    if result.get("exported") != 1:
        raise SystemExit(f"expected one exported window, got {result}")
    window = result["windows"][0]
    ctx.integrations.delete(spec["account"], integration["id"])  # frees the slot (5 per account)
    return {
        "seconds": seconds,
        "rows": window["rows"],
        "bytes": window["bytes"],
        "file": window["file"],
        "peak_rss_mb": peak,
        "rss_before_mb": rss_before,
        "cpu_seconds": cpu,
        "server_cpu_seconds": server,
        "arrow_pool_peak_mb": pa.default_memory_pool().max_memory() / 1e6,
        **(
            {
                "round_trips": [
                    (round((a - t0) * 1000, 1), round((b - t0) * 1000, 1), *w) for a, b, *w in trips if a - t0 < seconds
                ]
            }
            if trips is not None
            else {}
        ),
    }


def _traced_round_trips() -> list[tuple[float, float, str, str, str]]:
    """Every HTTP request from now on (urllib3: the Azure SDK, botocore and google-auth all use it): its start
    and end (perf_counter), thread, method and path (`bench.start_cost --trace` prints them)."""
    from urllib3.connectionpool import HTTPConnectionPool

    trips: list[tuple[float, float, str, str, str]] = []
    urlopen = HTTPConnectionPool.urlopen

    def traced(pool: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return urlopen(pool, method, url, *args, **kwargs)
        finally:
            path = url.split("?")[0][-60:] + ("?" + url.split("?")[1][:40] if "?" in url else "")
            trips.append((t, time.perf_counter(), threading.current_thread().name, method, f"{pool.port} {path}"))

    HTTPConnectionPool.urlopen = traced  # type: ignore[method-assign]
    return trips


# ---------------------------------------------------------------- 2: the I/O floor


def _download_all(container, paths: list[str], prefetch: int) -> int:
    """Download exactly these blobs, `prefetch` at a time, each as the store's read path does."""
    with ThreadPoolExecutor(max(1, prefetch)) as pool:
        return sum(pool.map(lambda p: len(ucd_reader.download_segment(container, p)), paths))


def _blob_service(spec: dict[str, Any]) -> BlobServiceClient:
    """A client of the bench's Azurite with the app's own transport (its pool sized as the app sizes it)."""
    transport = pooled_transport(BLOB_CONNECTIONS, **STORAGE_SDK_TRANSPORT)
    return BlobServiceClient.from_connection_string(spec["connection"], transport=transport)


def _upload(container, name: str, payload: memoryview, block_bytes: int, in_flight: int) -> None:
    """Stage `payload` in `block_bytes` blocks, `in_flight` at a time, then commit (as BlockUploader)."""
    blob = container.get_blob_client(name)
    ids = [block_id(i) for i in range(0, max(1, -(-len(payload) // block_bytes)))]
    with ThreadPoolExecutor(in_flight) as pool:
        list(
            pool.map(
                lambda i: blob.stage_block(
                    ids[i],
                    payload[i * block_bytes : (i + 1) * block_bytes],
                    length=len(payload[i * block_bytes : (i + 1) * block_bytes]),
                ),
                range(len(ids)),
            )
        )
    blob.commit_block_list(ids)


def io_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """The window's segment bytes downloaded and a CSV-sized blob uploaded, overlapped as in the export."""
    ctx = Context.create(_settings(spec), ManualClock(data.T0))
    paths = _segment_paths(ctx, spec)
    service = _blob_service(spec)
    ucd = service.get_container_client(spec["ucd_container"])
    out = service.get_container_client(spec["out_container"])
    size = spec["csv_bytes"]
    payload = memoryview((b'0123456789abcdef,"quoted",x\r\n' * (size // 29 + 1))[:size])
    prefetch = ucd_reader.READ_PREFETCH
    block_bytes, in_flight = BLOCK_BYTES, runner.MAX_IN_FLIGHT
    results: dict[str, Any] = {
        "segments": len(paths),
        "prefetch": prefetch,
        "block_bytes": block_bytes,
        "in_flight": in_flight,
    }

    t0 = time.perf_counter()
    read = _download_all(ucd, paths, prefetch)
    results["download_seconds"] = time.perf_counter() - t0
    results["segment_bytes"] = read

    t0 = time.perf_counter()
    _upload(out, "bench-floor/upload-only.csv", payload, block_bytes, in_flight)
    results["upload_seconds"] = time.perf_counter() - t0

    # The floor: both at once, as the export overlaps reading and staging.
    cpu0, server0 = time.process_time(), server_cpu(spec)
    t0 = time.perf_counter()
    downloader = threading.Thread(target=_download_all, args=(ucd, paths, prefetch))
    downloader.start()
    _upload(out, "bench-floor/floor.csv", payload, block_bytes, in_flight)
    downloader.join()
    results["seconds"] = time.perf_counter() - t0
    results["cpu_seconds"] = time.process_time() - cpu0
    results["server_cpu_seconds"] = server_cpu(spec) - server0
    results["bytes"] = size
    results["peak_rss_mb"] = rss_mb()
    return results


# ---------------------------------------------------------------- 3: naive baseline


def naive(spec: dict[str, Any]) -> dict[str, Any]:
    """The same selection the obvious way: pyarrow → Python rows → csv.writer → one upload."""
    ctx = Context.create(_settings(spec), ManualClock(data.T0))
    service = _blob_service(spec)
    ucd = service.get_container_client(spec["ucd_container"])
    out = service.get_container_client(spec["out_container"])
    names = set(data.selection_names())
    params: dict[str, set[str]] = {}
    for e in data.SELECTION_EVENTS:
        for p in e["params"]:
            params.setdefault(p, set()).add(e["name"])
    header = list(FIXED_COLUMNS) + list(params) + [f"attr_{a}" for a in data.SELECTION_ATTRIBUTES]
    sources = list(FIXED_COLUMNS) + [f"p:{p}" for p in params] + [f"a:{a}" for a in data.SELECTION_ATTRIBUTES]
    rss_before = rss_mb()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    paths = _segment_paths(ctx, spec)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(header)
    rows = 0
    for path in paths:
        table = _segment_table(ucd.download_blob(path).readall())
        for row in table.to_pylist():
            if row["event_name"] not in names:
                continue
            cells = []
            for h, s in zip(header, sources):
                value = row.get(s)
                if h in params and row["event_name"] not in params[h]:
                    value = None
                cells.append("" if value is None else value)
            writer.writerow(cells)
            rows += 1
    body = text.getvalue().encode("utf-8")
    out.upload_blob("bench-naive/naive.csv", body, overwrite=True)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rows": rows,
        "bytes": len(body),
        "peak_rss_mb": rss_mb(),
        "rss_before_mb": rss_before,
        "cpu_seconds": time.process_time() - cpu0,
    }


def _segment_table(blob: bytes) -> pa.Table:
    """A whole segment as a table, whichever format it is stored in (the naive way: every column)."""
    head = (
        pa.ipc.open_file(pa.py_buffer(blob)).schema if blob[:6] == b"ARROW1" else pq.read_schema(pa.BufferReader(blob))
    )
    _present, batches = segment_batches(blob, head.names)
    return pa.Table.from_batches(list(batches), schema=head)


# ---------------------------------------------------------------- window read (UCD)


def window_read(spec: dict[str, Any]) -> dict[str, Any]:
    """`UcdStore.read_window` for the export's selection, batches consumed and dropped, against a download of
    exactly its segments (`READ_PREFETCH` at a time, as the store's reader) in the same process.

    The read is timed as the worker uses it, of segments already listed (the worker lists a window's
    segments in the background while it reads its records), and with its own listing; the download is
    given the paths. The three alternate `read_repeats` times (7) and each reports its fastest run, so that a
    machine whose load drifts weighs on all alike. Each run is `read_passes` (3) passes over the window back to
    back: one pass is 0.05-0.1 s, so a 10 ms stall of the shared machine would otherwise move the ratio by 0.1-0.2.
    Figures are per pass; `pairwise_ratio_median` is the median of each run's read / the download just before it.
    """
    ctx = Context.create(_settings(spec), ManualClock(data.T0))
    start, end = _window(spec)
    service = _blob_service(spec)
    ucd = service.get_container_client(spec["ucd_container"])
    paths = _segment_paths(ctx, spec)
    passes = max(1, spec.get("read_passes", 3))
    best: dict[str, Any] = {}
    pairs: list[float] = []
    for _ in range(max(1, spec.get("read_repeats", 7))):
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for _pass in range(passes):
            segment_bytes = _download_all(ucd, paths, ucd_reader.READ_PREFETCH)
        download = (time.perf_counter() - t0) / passes
        download_cpu = (time.process_time() - cpu0) / passes
        listed = ctx.ucd.segments(spec["account"], start, end)
        for key, segments in (("", listed), ("with_listing_", None)):
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            for _pass in range(passes):
                rows = nbytes = 0
                for batch in ctx.ucd.read_window(
                    spec["account"],
                    start,
                    end,
                    event_names=data.selection_names(),
                    columns=data.selection_columns(),
                    segments=segments,
                ):
                    rows += batch.num_rows
                    nbytes += batch.nbytes
            seconds = (time.perf_counter() - t0) / passes
            cpu = (time.process_time() - cpu0) / passes
            if not key:
                pairs.append(seconds / download)
            if seconds <= best.get(f"{key}seconds", seconds):
                best.update({f"{key}seconds": seconds, f"{key}cpu_seconds": cpu})
        if download <= best.get("download_seconds", download):
            best.update(download_seconds=download, download_cpu_seconds=download_cpu)
    blobs = [ucd_reader.download_segment(ucd, path) for path in paths]
    formats: dict[str, int] = {}
    for blob in blobs:
        kind = "arrow" if blob[:6] == b"ARROW1" else "parquet" if blob[:4] == b"PAR1" else "other"
        formats[kind] = formats.get(kind, 0) + 1
    return {
        **best,
        **_decode_figures(blobs, spec.get("read_repeats", 7)),
        "read_passes": passes,
        "pairwise_ratio_median": statistics.median(pairs),
        "rows": rows,
        "arrow_bytes": nbytes,
        "segments": len(paths),
        "segment_bytes": segment_bytes,
        "segment_formats": formats,
        "peak_rss_mb": rss_mb(),
    }


def _decode_figures(blobs: list[bytes], repeats: int) -> dict[str, Any]:
    """What the read decodes of these segments for the export's selection: its CPU with no I/O (one thread,
    fastest of `repeats`: what a read spends beyond its download), and how much of each version-3 segment it
    decompresses (record batches holding a wanted name; columns asked for, of those stored)."""
    columns = list(FIXED_COLUMNS) + data.selection_columns()
    names = frozenset(data.selection_names())
    cpu = float("inf")
    for _ in range(max(1, repeats)):
        cpu0 = time.process_time()
        for blob in blobs:
            for _batch in segment_batches(blob, columns, names)[1]:
                pass
        cpu = min(cpu, time.process_time() - cpu0)
    shape = {"batches": 0, "batches_read": 0, "columns": 0, "columns_read": 0}
    for blob in blobs:
        if blob[:6] != b"ARROW1":
            continue
        schema = pa.ipc.open_file(pa.py_buffer(blob)).schema
        layout = json.loads((schema.metadata or {}).get(LAYOUT_KEY, b"null"))
        if layout is None:
            continue  # version 2: every batch is read and filtered
        shape["batches"] += len(layout["batches"])
        shape["batches_read"] += len(
            {i for i, _first, _rows in wanted_slices(layout["runs"], layout["batches"], names)}
        )
        shape["columns"] += len(schema.names)
        # The event name is made from the layout, never decompressed.
        shape["columns_read"] += len([n for n in columns if n in schema.names and n != "event_name"])
    return {"decode_cpu_seconds": cpu, "decoded": shape}


# ---------------------------------------------------------------- upsert


def _request(spec: dict[str, Any], r: int) -> dict[str, Any]:
    """A realistic upsert body: `users_per_request` users with attributes, events of mixed parameters."""
    per_user = spec["events_per_request"] // spec["users_per_request"]
    users = []
    base = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
    for u in range(spec["users_per_request"]):
        uid = f"ingest-{r:04d}-{u:05d}"
        events = []
        for k in range(per_user):
            name = data.EVENT_NAMES[(u + k) % len(data.EVENT_NAMES)]
            params: dict[str, Any] = {}
            for key in sorted(data.PARAMS_OF[name]):
                params[key] = {
                    "price": round(1 + (u * 7 + k) % 5000 / 10, 2),
                    "currency": "EUR",
                    "quantity": 1 + k % 5,
                    "sku": f"SKU-{(u * 31 + k) % 50000:06d}",
                    "is_gift": k % 2 == 0,
                    "tags": ["sale", {"step": k % 3}],
                    "url": f"https://shop.example.com/p/{u}?k={k}",
                    "rating": 1 + k % 5,
                }[key]
            ts = base + timedelta(seconds=r * 60 + k, milliseconds=u)
            events.append(
                {"event_name": name, "timestamp": ts.isoformat().replace("+00:00", "Z"), "event_params": params}
            )
        users.append(
            {
                "user_id": uid,
                "identifiers": {"email": f"{uid}@example.com"},
                "attributes": {"email": f"{uid}@example.com", "country": "TR", "plan": "pro", "age": 20 + u % 50},
                "events": events,
            }
        )
    return {"users": users}


def upsert(spec: dict[str, Any]) -> dict[str, Any]:
    """`ctx.ucd.upsert` of realistic requests, the raw writes its design must make (the floor, with the
    SDK), and the same request resent; the three request by request, so that a machine whose load
    drifts weighs on each alike."""
    from azure.data.tables import TableServiceClient

    from exporter.ucd.request import parse_upsert

    account = spec["ingest_account"]
    clock = ManualClock(datetime(2026, 11, 29, 0, 0, tzinfo=timezone.utc))
    ctx = Context.create(_settings(spec), clock)
    bodies = [_request(spec, r) for r in range(spec["requests"])]
    requests = [parse_upsert(account, json.loads(json.dumps(b))) for b in bodies]
    segments = ctx.storage.ucd_container()
    # The floor: one claim entity per event, grouped by the same partitions, 100 per transaction,
    # 8 threads; plus one segment put of the same size. Into a scratch table.
    tables = TableServiceClient.from_connection_string(spec["connection"])
    scratch = tables.create_table_if_not_exists(f"{spec['table_prefix']}floor")
    service_container = _blob_service(spec).get_container_client(spec["ucd_container"])
    run = uuid.uuid4().hex[:8]

    def floor(r: int, ids: list[str], size: int) -> int:
        groups: dict[str, list[str]] = {}
        for eid in ids:
            groups.setdefault(claim_partition(f"{run}-{r}", eid), []).append(eid)
        chunks = [
            (pk, g[i : i + TRANSACTION_SIZE]) for pk, g in groups.items() for i in range(0, len(g), TRANSACTION_SIZE)
        ]
        with ThreadPoolExecutor(WORKERS) as pool:
            list(
                pool.map(
                    lambda c: scratch.submit_transaction(
                        [("create", {"PartitionKey": c[0], "RowKey": e, "segment": "x"}) for e in c[1]]
                    ),
                    chunks,
                )
            )
        service_container.upload_blob(f"floor/{run}-{r:04d}.parquet", b"\0" * size, overwrite=True)
        return len(chunks)

    # One request of other users first, untimed, for the upsert and its floor alike: what each process pays
    # once (connections, thread start-up, the catalog's first extension) is not a per-request cost.
    warm = parse_upsert(account, _request(spec, spec["requests"]))
    ctx.ucd.upsert(warm)
    floor(spec["requests"], [e.event_id for u in warm.users for e in u.events], 1)

    stored = resent_duplicates = transactions = 0
    per_request, floor_per_request, resend_per_request = [], [], []
    cpu = {"upsert": 0.0, "floor": 0.0, "resend": 0.0}  # this process's CPU (all its threads) in each part
    known = {b.name for b in segments.list_blobs(name_starts_with=f"{account}/events/")}
    for r, req in enumerate(requests):
        clock.advance(seconds=5)
        t, c = time.perf_counter(), time.process_time()
        stored += ctx.ucd.upsert(req).stored_events
        per_request.append(time.perf_counter() - t)
        cpu["upsert"] += time.process_time() - c

        written = [b for b in segments.list_blobs(name_starts_with=f"{account}/events/") if b.name not in known]
        known.update(b.name for b in written)
        t, c = time.perf_counter(), time.process_time()
        transactions = floor(r, [e.event_id for u in req.users for e in u.events], sum(b.size for b in written))
        floor_per_request.append(time.perf_counter() - t)
        cpu["floor"] += time.process_time() - c

        # The resend: the same request again, as a platform retrying a batch after a timeout. Every
        # event is stored already: each must come back a duplicate, for no more than the first send cost.
        clock.advance(seconds=5)
        t, c = time.perf_counter(), time.process_time()
        again = ctx.ucd.upsert(req)
        resend_per_request.append(time.perf_counter() - t)
        cpu["resend"] += time.process_time() - c
        if again.stored_events:
            raise SystemExit(f"a resend stored {again.stored_events} events again")
        resent_duplicates += again.duplicate_events
    events = sum(req.received_events for req in requests)
    return {
        "seconds": sum(per_request),
        "events": events,
        "stored": stored,
        "requests": len(requests),
        "transactions_per_request": transactions,
        "floor_seconds": sum(floor_per_request),
        "resend_seconds": sum(resend_per_request),
        "resend_duplicates": resent_duplicates,
        "cpu_seconds": cpu["upsert"],
        "floor_cpu_seconds": cpu["floor"],
        "resend_cpu_seconds": cpu["resend"],
        "per_request_ms": [round(x * 1000) for x in per_request],
        "floor_per_request_ms": [round(x * 1000) for x in floor_per_request],
        "resend_per_request_ms": [round(x * 1000) for x in resend_per_request],
        "peak_rss_mb": rss_mb(),
    }


# ---------------------------------------------------------------- S3 and GCS: their own I/O floor


def _s3_upload(body: dict[str, Any], name: str, payload: memoryview, block_bytes: int, in_flight: int) -> None:
    """A multipart upload with boto3 alone: parts of `block_bytes`, `in_flight` at a time, then complete."""
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3",
        region_name=body["region"],
        endpoint_url=body.get("endpoint_url"),
        aws_access_key_id=body["access_key_id"],
        aws_secret_access_key=body["secret_access_key"],
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=in_flight * 2),
    )
    upload = client.create_multipart_upload(Bucket=body["bucket"], Key=name)["UploadId"]
    count = max(1, -(-len(payload) // block_bytes))

    def part(i: int) -> dict[str, Any]:
        chunk = bytes(payload[i * block_bytes : (i + 1) * block_bytes])
        answer = client.upload_part(Bucket=body["bucket"], Key=name, UploadId=upload, PartNumber=i + 1, Body=chunk)
        return {"PartNumber": i + 1, **{k: v for k, v in answer.items() if k == "ETag" or k.startswith("ChecksumCRC")}}

    with ThreadPoolExecutor(in_flight) as pool:
        parts = list(pool.map(part, range(count)))
    client.complete_multipart_upload(Bucket=body["bucket"], Key=name, UploadId=upload, MultipartUpload={"Parts": parts})


def _gcs_upload(body: dict[str, Any], name: str, payload: memoryview, block_bytes: int) -> None:
    """A resumable upload with google-cloud-storage alone: chunks of `block_bytes` in order (GCS allows no other)."""
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import storage
    from google.oauth2 import service_account

    creds = service_account.Credentials.from_service_account_info(
        body["service_account_key"], scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
    )
    client = storage.Client(project="bench", credentials=creds, client_options={"api_endpoint": body["endpoint_url"]})
    url = (
        client.bucket(body["bucket"]).blob(name).create_resumable_upload_session(content_type="text/csv", checksum=None)
    )
    http, total = AuthorizedSession(creds), len(payload)
    for start in range(0, total, block_bytes):
        end = min(start + block_bytes, total)
        of = total if end == total else "*"
        answer = http.put(
            url, data=bytes(payload[start:end]), headers={"Content-Range": f"bytes {start}-{end - 1}/{of}"}
        )
        if answer.status_code not in ((200, 201) if end == total else (308,)):
            raise SystemExit(f"GCS chunk refused: {answer.status_code}")


def io_floor_cloud(spec: dict[str, Any]) -> dict[str, Any]:
    """As io_floor, with the CSV-sized upload going to the S3 or GCS destination by its own protocol."""
    ctx = Context.create(_settings(spec), ManualClock(data.T0))
    paths = _segment_paths(ctx, spec)
    ucd = _blob_service(spec).get_container_client(spec["ucd_container"])
    body, size = spec["destination"], spec["csv_bytes"]
    payload = memoryview((b'0123456789abcdef,"quoted",x\r\n' * (size // 29 + 1))[:size])
    prefetch, block_bytes, in_flight = ucd_reader.READ_PREFETCH, BLOCK_BYTES, runner.MAX_IN_FLIGHT

    def upload(name: str) -> None:
        if body["type"] == "s3":
            _s3_upload(body, name, payload, block_bytes, in_flight)
        else:
            _gcs_upload(body, name, payload, block_bytes)

    results: dict[str, Any] = {"segments": len(paths), "block_bytes": block_bytes, "in_flight": in_flight}
    if not spec.get("floor_only"):  # the large window's floor: the overlapped run alone (each pass is long)
        t0 = time.perf_counter()
        results["segment_bytes"] = _download_all(ucd, paths, prefetch)
        results["download_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        upload("bench-floor/upload-only.csv")
        results["upload_seconds"] = time.perf_counter() - t0
    cpu0, t0 = time.process_time(), time.perf_counter()
    downloader = threading.Thread(target=_download_all, args=(ucd, paths, prefetch))
    downloader.start()
    upload("bench-floor/floor.csv")
    downloader.join()
    results.update(
        seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - cpu0, bytes=size, peak_rss_mb=rss_mb()
    )
    return results


KINDS = {
    "export": export,
    "io_floor": io_floor,
    "naive": naive,
    "window_read": window_read,
    "upsert": upsert,
    "io_floor_cloud": io_floor_cloud,
    **scale.KINDS,  # windows of any size: bench/scale.py
}


def _tune(spec: dict[str, Any]) -> None:
    """Experiments only: override the read/stage knobs (`tune` in the spec) before measuring."""
    tune = spec.get("tune") or {}
    for read_defaults in (
        ucd_reader.WindowReader.read_window.__kwdefaults__,
        ucd_reader.WindowReader.read_from.__kwdefaults__,  # the export's read
    ):
        if "prefetch" in tune:
            read_defaults["prefetch"] = tune["prefetch"]
        if "batch_rows" in tune:
            read_defaults["batch_rows"] = tune["batch_rows"]
    if "block_bytes" in tune:
        runner.export_window.__kwdefaults__["block_bytes"] = tune["block_bytes"]
    if "in_flight" in tune:
        runner.export_window.__kwdefaults__["max_in_flight"] = tune["in_flight"]


def main(argv: list[str]) -> int:
    # Warnings to stderr, where the bench counts urllib3's "Connection pool is full" (urllib3's own
    # NullHandler would otherwise swallow them, there being no handler on the root logger).
    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(Path(argv[0]).read_text())
    _tune(spec)
    result = KINDS[spec["kind"]](spec)
    result["ru_maxrss_mb"] = ru_maxrss_mb()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
