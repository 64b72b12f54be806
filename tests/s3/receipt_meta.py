"""Reads objects' user metadata back with boto3 (the client the next tier uses): prints
{key: x-amz-meta-fogd-receipt or null} as JSON. Usage: receipt_meta.py ENDPOINT ACCESS SECRET BUCKET KEY..."""
import json
import sys

import boto3
from botocore.config import Config

endpoint, access, secret, bucket, *keys = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                  region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
out = {}
for k in keys:
    out[k] = s3.head_object(Bucket=bucket, Key=k)["Metadata"].get("fogd-receipt")
print(json.dumps(out))
