"""The S3 client every app uses (imports, exports, model weights, signed links), made from the
AWS_* settings; boto3 is imported only when S3 is used."""
from django.conf import settings


def s3_client(*, endpoint_url: str | None = None):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or settings.AWS_S3_ENDPOINT_URL,
        region_name=settings.AWS_S3_REGION_NAME,
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
    )


def s3_url_signing_client():
    """A client for signing URLs that browsers will open: on AWS_S3_PUBLIC_ENDPOINT_URL when set
    (the app may reach S3 at an address browsers cannot), else the same endpoint as s3_client()."""
    return s3_client(endpoint_url=settings.AWS_S3_PUBLIC_ENDPOINT_URL)


_s3_clients: dict[tuple, object] = {}


def s3_client_cached():
    """One client per endpoint and credentials (boto3 clients are thread-safe, and slow to make)."""
    key = (settings.AWS_S3_ENDPOINT_URL, settings.AWS_S3_REGION_NAME, settings.AWS_ACCESS_KEY_ID)
    if key not in _s3_clients:
        _s3_clients[key] = s3_client()
    return _s3_clients[key]
