"""S3 at AWS's own minimum part size, 5 MiB.

The suite's moto takes parts from 256 KiB (`TEST_S3_MIN_PART_BYTES`, exporter/local/cloudservers.py), so that
the resume and split grids cut the same blocks from a twentieth of the rows. Here a moto of this module's own
refuses, as AWS does, a part under 5 MiB but the last, and a window exported over several invocations and a
window split in parts by two workers are delivered through it, each the bytes of a clean export.
"""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from exporter.destinations import s3 as s3_destination
from exporter.local.cloudservers import S3_MIN_PART_BYTES, start_moto
from tests.destination_helpers import BUCKET_PREFIX, make_kit, part_minimum
from tests.test_export_resume import several_invocations
from tests.test_export_split import split_in_three_parts_by_two_workers

# One worker runs the module, so its own moto at AWS's part size (a module fixture) starts once, not on each worker.
pytestmark = pytest.mark.xdist_group("s3-part-minimum")

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def moto_s3():
    """This module's moto, at AWS's minimum part size (the session's `moto_s3` takes smaller parts)."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_kit_key(moto_s3):
    return moto_s3.create_user(f"kits-{uuid.uuid4().hex[:8]}", ["s3:*"], f"{BUCKET_PREFIX}*")


@pytest.fixture
def s3_scratch(request, tag):
    return make_kit(request, "s3", tag + "s")


def test_this_moto_refuses_a_part_under_5_mib_but_the_last_as_aws_does(s3):
    assert part_minimum(s3) == S3_MIN_PART_BYTES == 5 * MiB
    assert s3_destination.MIN_PART_BYTES == S3_MIN_PART_BYTES, "the exporter's own minimum, as the kit leaves it"
    client = s3.server.client()
    handle = client.create_multipart_upload(Bucket=s3.bucket, Key="short")["UploadId"]
    parts = [
        {
            "PartNumber": n,
            "ETag": client.upload_part(Bucket=s3.bucket, Key="short", UploadId=handle, PartNumber=n, Body=body)["ETag"],
        }
        for n, body in ((1, b"x" * (5 * MiB - 1)), (2, b"y"))
    ]
    with pytest.raises(ClientError) as refused:
        client.complete_multipart_upload(
            Bucket=s3.bucket, Key="short", UploadId=handle, MultipartUpload={"Parts": parts}
        )
    assert refused.value.response["Error"]["Code"] == "EntityTooSmall"


def test_a_window_over_several_invocations_is_delivered_in_parts_of_5_mib(ctx, clock, s3, s3_scratch, monkeypatch):
    several_invocations(ctx, clock, s3, s3_scratch, monkeypatch)


def test_a_window_split_in_parts_of_5_mib_or_more_is_committed_once(ctx, settings, clock, s3, s3_scratch, monkeypatch):
    split_in_three_parts_by_two_workers(ctx, settings, clock, s3, s3_scratch, monkeypatch)
