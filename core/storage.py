"""S3 storage whose signed URLs name the address browsers reach S3 at."""
from functools import cached_property

from storages.backends.s3 import S3Storage
from storages.utils import setting


class S3PublicUrlStorage(S3Storage):
    """django-storages' S3Storage, except that `url()` signs for `public_endpoint_url`
    (AWS_S3_PUBLIC_ENDPOINT_URL) when one is set.

    The app reaches S3 at AWS_S3_ENDPOINT_URL, which may be a private address (`http://minio:9000`
    under docker compose); browsers cannot. A signed URL names its host (SigV4 signs it), so it is
    made by a second storage configured with the public endpoint: signing makes no network call,
    and every read and write still goes through the private endpoint. (`custom_domain` is no
    answer: django-storages leaves its URLs unsigned unless CloudFront signs them.)"""

    def get_default_settings(self):
        return {**super().get_default_settings(), "public_endpoint_url": setting("AWS_S3_PUBLIC_ENDPOINT_URL")}

    def url(self, name, parameters=None, expire=None, http_method=None):
        if not self.public_endpoint_url or self.public_endpoint_url == self.endpoint_url:
            return super().url(name, parameters=parameters, expire=expire, http_method=http_method)
        return self._url_signer.url(name, parameters=parameters, expire=expire, http_method=http_method)

    @cached_property
    def _url_signer(self) -> S3Storage:
        own = {name: getattr(self, name) for name in S3Storage.get_default_settings(self)}
        return S3Storage(**{**own, "endpoint_url": self.public_endpoint_url})
