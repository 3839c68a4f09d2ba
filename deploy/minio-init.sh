#!/bin/sh
# One-shot set-up of MinIO for docker-compose.yml (the minio-init service, image minio/mc): the
# bucket, and the app's own user, allowed that bucket and nothing else. The root user stays with
# this script and MinIO. Safe to run on every `docker compose up`: each step leaves what is there.
#
# Environment: MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, MINIO_BUCKET, MINIO_APP_USER, MINIO_APP_PASSWORD.
set -eu

policy="${MINIO_BUCKET}-readwrite"

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "local/$MINIO_BUCKET"

# Objects: read, write, delete (images, previews, manifests, exports, model weights); the bucket:
# list it (storage listdir, exists) and run multipart uploads (large exports).
cat > /tmp/app-policy.json <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::${MINIO_BUCKET}"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                 "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::${MINIO_BUCKET}/*"]
    }
  ]
}
POLICY
mc admin policy create local "$policy" /tmp/app-policy.json
# Adding an existing user sets its secret key: changing MINIO_APP_PASSWORD takes effect on the next up.
mc admin user add local "$MINIO_APP_USER" "$MINIO_APP_PASSWORD"
# A rerun finds the policy attached, which mc reports as an error ("already in effect").
if ! out=$(mc admin policy attach local "$policy" --user "$MINIO_APP_USER" 2>&1); then
  echo "$out" | grep -qi "already in effect" || { echo "$out" >&2; exit 1; }
fi
