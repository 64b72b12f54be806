//! A large object sent in parts (`PutOptions::part_bytes` each, each paced and checked by its
//! MD5), aborted on failure so that the store keeps no orphaned parts.

use std::path::Path;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

use super::{object_metadata, split, S3Store};
use crate::store::{ObjectMeta, PutOptions, Result, StoreError};

impl S3Store {
    pub(super) async fn put_multipart(
        &self,
        key: &str,
        src: &Path,
        size: u64,
        opts: &PutOptions<'_>,
    ) -> Result<ObjectMeta> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        use base64::Engine;
        use md5::Digest;
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let (bucket, object) = split(key);
        let mut created = None;
        for attempt in 0..2 {
            match self
                .client
                .create_multipart_upload()
                .bucket(bucket)
                .key(object)
                .set_metadata(Some(object_metadata(opts)))
                .send()
                .await
            {
                Ok(c) => {
                    created = Some(c);
                    break;
                }
                Err(e) if attempt == 0 && e.code() == Some("NoSuchBucket") => {
                    self.create_bucket(bucket).await?
                }
                Err(e) => return Err(self.remote("start multipart", key, e)),
            }
        }
        let upload_id = created
            .and_then(|c| c.upload_id().map(str::to_string))
            .ok_or_else(|| self.bucket_missing(key))?;
        let result = async {
            let mut file = tokio::fs::File::open(src)
                .await
                .map_err(|e| StoreError::io(src, e))?;
            let mut parts = Vec::new();
            let mut offset = 0u64;
            let mut n = 1;
            while offset < size {
                let len = opts.part_bytes.min(size - offset);
                let mut buf = vec![0u8; len as usize];
                file.seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(|e| StoreError::io(src, e))?;
                file.read_exact(&mut buf)
                    .await
                    .map_err(|e| StoreError::io(src, e))?;
                let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&buf));
                if let Some(p) = opts.pace {
                    p.take(len).await;
                }
                let out = self
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(object)
                    .upload_id(&upload_id)
                    .part_number(n)
                    .content_md5(md5)
                    .body(ByteStream::from(buf))
                    .send()
                    .await
                    .map_err(|e| self.remote("put part", key, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build(),
                );
                offset += len;
                n += 1;
            }
            let done = self
                .client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(object)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| self.remote("complete multipart", key, e))?;
            Ok(ObjectMeta {
                key: key.to_string(),
                size,
                etag: done.e_tag().unwrap_or_default().trim_matches('"').to_string(),
            })
        }
        .await;
        if result.is_err() {
            // Parts already sent would otherwise be kept (and billed) by the store.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(object)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}
