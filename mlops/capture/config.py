"""What a capture writer captures and where: :class:`CaptureConfig`, checked before it starts.

One object per variant, built from the project's settings (:meth:`CaptureConfig.from_settings`)
or by hand; :class:`~mlops.capture.writer.CaptureWriter` takes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops.capture.format import check_name, parse_destination
from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["CaptureConfig"]


@dataclass(frozen=True)
class CaptureConfig:
    """What to capture and where.

    Attributes:
        destination: local folder, ``s3://bucket/prefix`` or an SQS queue
            (``sqs://<queue-name>`` or its URL; see :mod:`mlops.capture.sqs`).
        endpoint_name: the endpoint (first path component under the destination).
        variant_name: the production variant (second path component).
        sampling_percentage: percent of requests
            :meth:`~mlops.capture.writer.CaptureWriter.should_capture` keeps.
        csv_content_types: content types stored as text with encoding ``CSV``.
        json_content_types: content types stored as text with encoding ``JSON``; any other
            type is stored as ``BASE64``.
        flush_interval_s: how often the background thread writes buffered records.
        rotate_interval_s: start a new file at most this often (and at every hour change).
        aws_region: region of the S3 client (S3 destinations).
        aws_endpoint_url: endpoint of the S3 client, e.g. moto on loopback.
        spool_dir: where S3 files wait for upload (default: the system temp folder); files
            left there by a killed process are uploaded by the next writer to the same
            destination.
        fallback_dir: a local folder for records the destination refuses (or every record
            while it cannot be opened); they are moved to the destination once it works
            again, by this writer or the next one to the same destination. ``None``: no
            fallback, failed writes wait in memory only.
    """

    destination: str
    endpoint_name: str
    variant_name: str = "AllTraffic"
    sampling_percentage: int = 100
    csv_content_types: tuple[str, ...] = ("text/csv",)
    json_content_types: tuple[str, ...] = ("application/json",)
    flush_interval_s: float = 1.0
    rotate_interval_s: float = 60.0
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    spool_dir: str | None = None
    fallback_dir: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        endpoint_name: str,
        variant_name: str = "AllTraffic",
        destination: str | None = None,
        sampling_percentage: int | None = None,
    ) -> CaptureConfig:
        """The capture configuration of one variant from the project's settings.

        Args:
            settings: effective settings (``serving.capture`` and ``aws``).
            endpoint_name: the endpoint.
            variant_name: the variant.
            destination: overrides ``settings.capture_destination``.
            sampling_percentage: overrides ``serving.capture.sampling_percentage``.
        """
        capture = settings.serving.capture
        return cls(
            destination=destination or settings.capture_destination,
            endpoint_name=endpoint_name,
            variant_name=variant_name,
            sampling_percentage=(
                capture.sampling_percentage if sampling_percentage is None
                else sampling_percentage
            ),
            csv_content_types=tuple(capture.csv_content_types),
            json_content_types=tuple(capture.json_content_types),
            flush_interval_s=capture.flush_interval_s,
            aws_region=settings.effective_aws_region,
            aws_endpoint_url=settings.aws.endpoint_url,
        )

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field and its fix."""
        parse_destination(self.destination, queue_ok=True)
        check_name(self.endpoint_name, "endpoint")
        check_name(self.variant_name, "variant")
        pct = self.sampling_percentage
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            raise ConfigError(
                f"capture sampling_percentage {pct!r} is not an integer from 0 to 100; "
                "set e.g. 100 to capture every request"
            )
        for name in ("flush_interval_s", "rotate_interval_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(
                    f"capture {name} {value!r} must be a positive number of seconds"
                )
        for name in ("csv_content_types", "json_content_types"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or not all(
                isinstance(t, str) and t.strip() for t in value
            ):
                raise ConfigError(
                    f"capture {name} {value!r} must be a tuple of content types, "
                    "e.g. ('text/csv',)"
                )
