"""The S3 backend (AWS and S3-compatible servers): storage.S3Storage over boto3, and
what needs no boto3: object settings, IAM policies, checksums.

Nothing is imported here, so that reading a policy or a setting never loads boto3."""
