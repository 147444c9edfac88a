"""read_table, write_parquet and frame_digest, including S3 through moto on loopback."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.data import frame_digest, load_builtin, read_table, write_parquet
from mlops.errors import DataError, DatasetNotFoundError
from mlops.settings_sections import AwsSettings


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trip distance": [1.5, 2.25, 3.0, 0.5],
            "passengers": [1, 2, 1, 4],
            "city": ["NYC", "Boston, MA", 'say "hi"', "x"],
            "fare": [10.5, 12.0, 20.25, 5.0],
        }
    )


def test_csv_round_trip(tmp_path, table):
    path = tmp_path / "trips.csv"
    table.to_csv(path, index=False)
    pd.testing.assert_frame_equal(read_table(str(path)), table)


def test_csv_header_with_quotes_and_spaces(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('"trip distance","fare, usd",label\n1.5,"10.5",a\n2,11,b\n')
    frame = read_table(str(path))
    assert list(frame.columns) == ["trip distance", "fare, usd", "label"]
    assert frame["fare, usd"].tolist() == [10.5, 11.0]


def test_csv_gz_round_trip_and_file_uri(tmp_path, table):
    path = tmp_path / "trips.csv.gz"
    table.to_csv(path, index=False, compression="gzip")
    pd.testing.assert_frame_equal(read_table(str(path)), table)
    pd.testing.assert_frame_equal(read_table(path.as_uri()), table)


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_round_trip_keeps_dtypes(tmp_path, suffix):
    frame = load_builtin("taxi", rows=200).frame
    path = write_parquet(frame, tmp_path / f"sub/taxi{suffix}")
    assert path.exists()
    pd.testing.assert_frame_equal(read_table(str(path)), frame)


def test_directory_of_parquet_is_one_table(tmp_path, table):
    folder = tmp_path / "parts"
    write_parquet(table.iloc[:2], folder / "part-0.parquet")
    write_parquet(table.iloc[2:], folder / "x=2" / "part-1.parquet")  # read in path order
    (folder / "_SUCCESS").write_text("")
    (folder / "notes.txt").write_text("ignored")
    pd.testing.assert_frame_equal(read_table(str(folder)), table)


def test_directory_with_mismatched_parts_names_both_files(tmp_path, table):
    folder = tmp_path / "parts"
    write_parquet(table, folder / "a.parquet")
    write_parquet(table.drop(columns=["city"]), folder / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet.*a\.parquet"):
        read_table(str(folder))


def test_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*no .parquet files"):
        read_table(str(tmp_path / "empty"))


def test_missing_file_is_dataset_not_found(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DatasetNotFoundError, match=r"nope\.csv does not exist"):
        read_table(str(path))


@pytest.mark.parametrize("name", ["data.json", "data.xlsx", "data"])
def test_unsupported_suffix(tmp_path, name):
    (tmp_path / name).write_text("{}")
    with pytest.raises(DataError, match=rf"{name} has an unsupported format.*\.parquet"):
        read_table(str(tmp_path / name))


def test_unsupported_scheme():
    with pytest.raises(DataError, match="gs://b/t.csv.*s3://"):
        read_table("gs://b/t.csv")


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(DataError, match=r"cannot read .*broken\.parquet as Parquet") as info:
        read_table(str(path))
    assert info.value.__cause__ is not None


def test_truncated_parquet(tmp_path, table):
    path = write_parquet(table, tmp_path / "t.parquet")
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"t\.parquet"):
        read_table(str(path))


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "broken.csv.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"broken\.csv\.gz as gzip-compressed CSV"):
        read_table(str(path))


def test_binary_csv_is_not_utf8(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"a,b\n\xff\xfe\x00\x81,2\n")
    with pytest.raises(DataError, match=r"binary\.csv is not UTF-8"):
        read_table(str(path))


def test_ragged_csv(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(DataError, match=r"cannot read .*ragged\.csv as CSV"):
        read_table(str(path))


def test_empty_csv_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        read_table(str(path))


def test_header_only_csv_has_no_rows(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("a,b,target\n")
    with pytest.raises(DataError, match=r"header\.csv has columns \(a, b, target\) but no rows"):
        read_table(str(path))


def test_zero_row_parquet(tmp_path, table):
    path = write_parquet(table.iloc[:0], tmp_path / "none.parquet")
    with pytest.raises(DataError, match=r"none\.parquet has columns .* but no rows"):
        read_table(str(path))


def test_zero_column_parquet(tmp_path):
    path = write_parquet(pd.DataFrame(index=range(3)), tmp_path / "nocols.parquet")
    with pytest.raises(DataError, match=r"nocols\.parquet has no columns"):
        read_table(str(path))


def test_headerless_csv_is_refused(tmp_path):
    path = tmp_path / "iris.csv"
    path.write_text("5.1,3.5,1.4,0.2,0\n4.9,3.0,1.4,0.2,0\n")
    with pytest.raises(DataError, match=r"first line of .*iris\.csv looks like data"):
        read_table(str(path))


def test_write_parquet_is_atomic_and_leaves_no_temp_files(tmp_path, table):
    target = tmp_path / "out.parquet"
    write_parquet(table, target)
    write_parquet(table.iloc[:1], target)  # replaces
    assert len(pd.read_parquet(target)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_write_parquet_failure_is_data_error_and_cleans_up(tmp_path):
    bad = pd.DataFrame({"a": [object(), object()]})
    with pytest.raises(DataError, match=r"cannot write the table to .*bad\.parquet"):
        write_parquet(bad, tmp_path / "bad.parquet")
    assert list(tmp_path.iterdir()) == []


def test_frame_digest_is_stable_and_sensitive(table):
    digest = frame_digest(table)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert frame_digest(table.copy()) == digest
    assert frame_digest(table.set_axis(range(10, 14))) == digest  # index ignored
    changed = table.copy()
    changed.loc[2, "fare"] = 20.26
    assert frame_digest(changed) != digest
    assert frame_digest(table.rename(columns={"fare": "price"})) != digest
    assert frame_digest(table.astype({"passengers": "float64"})) != digest
    assert frame_digest(table.iloc[::-1].reset_index(drop=True)) != digest
    # a known value: the digest does not depend on the process (no salted hashing)
    known = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert frame_digest(known) == "e9dc403cb4af7809c332072ac442f7c510cbb155d83f47c7b978efc3472559b9"


# --- S3 through moto's server on loopback -------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    import boto3

    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
    bucket = f"data-{np.random.default_rng().integers(1 << 30)}"
    client.create_bucket(Bucket=bucket)
    aws = AwsSettings(region="us-east-1", endpoint_url=moto_endpoint)
    return client, bucket, aws


def _put(client, bucket: str, key: str, path: Path) -> None:
    client.upload_file(str(path), bucket, key)


@pytest.mark.moto
def test_s3_csv_and_parquet(s3, tmp_path, table):
    client, bucket, aws = s3
    table.to_csv(tmp_path / "t.csv", index=False)
    write_parquet(table, tmp_path / "t.parquet")
    with gzip.open(tmp_path / "t.csv.gz", "wt") as fh:
        table.to_csv(fh, index=False)
    for name in ("t.csv", "t.parquet", "t.csv.gz"):
        _put(client, bucket, f"in/{name}", tmp_path / name)
        pd.testing.assert_frame_equal(read_table(f"s3://{bucket}/in/{name}", aws=aws), table)


@pytest.mark.moto
def test_s3_prefix_of_parquet(s3, tmp_path, table):
    client, bucket, aws = s3
    write_parquet(table.iloc[:3], tmp_path / "p0.parquet")
    write_parquet(table.iloc[3:], tmp_path / "p1.parquet")
    _put(client, bucket, "tables/trips/part-0.parquet", tmp_path / "p0.parquet")
    _put(client, bucket, "tables/trips/part-1.parquet", tmp_path / "p1.parquet")
    for uri in (f"s3://{bucket}/tables/trips/", f"s3://{bucket}/tables/trips"):
        pd.testing.assert_frame_equal(read_table(uri, aws=aws), table)


@pytest.mark.moto
def test_s3_missing_key_and_bucket(s3):
    _, bucket, aws = s3
    with pytest.raises(DatasetNotFoundError, match=rf"s3://{bucket}/nope\.csv does not exist"):
        read_table(f"s3://{bucket}/nope.csv", aws=aws)
    with pytest.raises(DatasetNotFoundError, match=r"s3://no-such-bucket-x/t\.parquet"):
        read_table("s3://no-such-bucket-x/t.parquet", aws=aws)


@pytest.mark.moto
def test_s3_bad_inputs(s3, tmp_path):
    client, bucket, aws = s3
    (tmp_path / "t.json").write_text("{}")
    _put(client, bucket, "t.json", tmp_path / "t.json")
    with pytest.raises(DataError, match=r"t\.json has an unsupported format"):
        read_table(f"s3://{bucket}/t.json", aws=aws)
    (tmp_path / "bad.parquet").write_bytes(b"garbage")
    _put(client, bucket, "bad.parquet", tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=rf"cannot read s3://{bucket}/bad\.parquet as Parquet"):
        read_table(f"s3://{bucket}/bad.parquet", aws=aws)
    with pytest.raises(DataError, match="names no object"):
        read_table(f"s3://{bucket}", aws=aws)
