//! The S3 operations over the local store (`data_dir/store/<bucket>/<key>`): buckets are its
//! top folders, objects its files. s3s parses requests, checks signatures and writes the XML;
//! this answers them. An object that arrives (PUT, multipart, copy) is routed as one put with
//! `fogd put`: the services watching its path are queued in the same way.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use super::errors::{blocking, io_err, store_err};
use super::listing::{keys_under, list_page, max_keys, say, timestamp};
pub use super::store::FogS3;
use super::store::{file_stream, EMPTY_MD5};
use crate::store::etag_of;

#[async_trait::async_trait]
impl S3 for FogS3 {
    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let root = self.store.root().to_path_buf();
        let buckets = blocking(move || {
            let mut out = Vec::new();
            let rd = match std::fs::read_dir(&root) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(io_err(&root, e)),
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let created = e.metadata().ok().and_then(|m| m.modified().ok());
                out.push(Bucket {
                    name: Some(name),
                    creation_date: timestamp(created),
                    ..Default::default()
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let dir = self.bucket_dir(&req.input.bucket)?;
        match tokio::fs::create_dir(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(s3_error!(BucketAlreadyOwnedByYou));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| io_err(&dir, e))?;
            }
            Err(e) => return Err(io_err(&dir, e)),
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", req.input.bucket)),
        }))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let dir = self.require_bucket(&req.input.bucket).await?;
        let d = dir.clone();
        let empty = blocking(move || {
            Ok(keys_under(&d, "")
                .map_err(|e| io_err(&d, e))?
                .iter()
                .all(|(k, _)| k.ends_with('/')))
        })
        .await?;
        if !empty {
            return Err(s3_error!(
                BucketNotEmpty,
                "bucket `{}` holds objects",
                req.input.bucket
            ));
        }
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(|e| io_err(&dir, e))?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let dir = self.require_bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let after = match (&i.continuation_token, &i.start_after) {
            (Some(t), _) => Some(t.clone()),
            (None, s) => s.clone(),
        };
        let (delim, max) = (i.delimiter.clone(), max_keys(i.max_keys));
        let url = i.encoding_type.as_ref().is_some_and(|e| e.as_str() == "url");
        let page = blocking(move || list_page(&dir, &prefix, delim.as_deref(), after.as_deref(), max))
            .await?
            .encode(url);
        let count = (page.objects.len() + page.prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: say(i.prefix, url),
            delimiter: say(i.delimiter, url),
            max_keys: Some(max as i32),
            key_count: Some(count),
            is_truncated: Some(page.truncated),
            continuation_token: i.continuation_token,
            next_continuation_token: page.truncated.then_some(page.last).flatten(),
            start_after: say(i.start_after, url),
            encoding_type: i.encoding_type,
            contents: Some(page.objects),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        let dir = self.require_bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let (delim, after, max) = (i.delimiter.clone(), i.marker.clone(), max_keys(i.max_keys));
        let url = i.encoding_type.as_ref().is_some_and(|e| e.as_str() == "url");
        let page =
            blocking(move || list_page(&dir, &prefix, delim.as_deref(), after.as_deref(), max)).await?;
        // The marker goes back as the client will send it: encoded when the keys are.
        let next = page.truncated.then(|| page.last.clone()).flatten();
        let page = page.encode(url);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(i.bucket),
            prefix: say(i.prefix, url),
            delimiter: say(i.delimiter, url),
            marker: say(i.marker, url),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_marker: say(next, url),
            encoding_type: i.encoding_type,
            contents: Some(page.objects),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let i = req.input;
        let dir = self.require_bucket(&i.bucket).await?;
        let key = Self::store_key(&i.bucket, &i.key)?;
        self.check_disk()?;
        if i.key.ends_with('/') {
            // A folder marker (OSCAR makes one per input path): a folder, never a trigger.
            if i.content_length.unwrap_or(0) > 0 {
                return Err(s3_error!(
                    InvalidArgument,
                    "a key ending in `/` names a folder and takes no data"
                ));
            }
            let d = dir.join(&i.key);
            tokio::fs::create_dir_all(&d).await.map_err(|e| io_err(&d, e))?;
            return Ok(S3Response::new(PutObjectOutput {
                e_tag: Some(ETag::Strong(EMPTY_MD5.into())),
                ..Default::default()
            }));
        }
        let (meta, etag) = self
            .write_body(&key, i.body, i.content_length, i.content_md5.as_deref(), None)
            .await?;
        self.arrived(&meta).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            size: Some(meta.size as i64),
            ..Default::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let i = req.input;
        let CopySource::Bucket { bucket, key, .. } = &i.copy_source else {
            return Err(s3_error!(NotImplemented, "copies from access points"));
        };
        self.refuse_raw(bucket, key)?;
        let src = self.find(bucket, key).await?;
        if src.meta.is_dir() {
            return Err(s3_error!(InvalidArgument, "a folder marker cannot be copied"));
        }
        self.require_bucket(&i.bucket).await?;
        let dst = Self::store_key(&i.bucket, &i.key)?;
        self.check_disk()?;
        let meta = self.store.put_file(&dst, &src.path).await.map_err(store_err)?;
        let etag = etag_of(&self.store.path_of(&dst))
            .map_err(store_err)?
            .unwrap_or_default();
        self.arrived(&meta).await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let f = self.find(&req.input.bucket, &req.input.key).await?;
        let len = if f.meta.is_dir() { 0 } else { f.meta.len() };
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(len as i64),
            e_tag: Some(ETag::Strong(f.etag)),
            last_modified: timestamp(f.meta.modified().ok()),
            accept_ranges: Some("bytes".into()),
            content_type: Some("application/octet-stream".to_string()),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        use tokio::io::AsyncSeekExt;
        let i = req.input;
        self.refuse_raw(&i.bucket, &i.key)?;
        let f = self.find(&i.bucket, &i.key).await?;
        let len = if f.meta.is_dir() { 0 } else { f.meta.len() };
        let (range, content_range) = match &i.range {
            None => (0..len, None),
            Some(r) => {
                let r = r.check(len)?;
                let cr = format!("bytes {}-{}/{len}", r.start, r.end.saturating_sub(1));
                (r, Some(cr))
            }
        };
        let body = if f.meta.is_dir() {
            None
        } else {
            let mut file = tokio::fs::File::open(&f.path)
                .await
                .map_err(|e| io_err(&f.path, e))?;
            file.seek(std::io::SeekFrom::Start(range.start))
                .await
                .map_err(|e| io_err(&f.path, e))?;
            Some(StreamingBlob::wrap(file_stream(file, range.end - range.start)))
        };
        Ok(S3Response::new(GetObjectOutput {
            body,
            content_length: Some((range.end - range.start) as i64),
            content_range,
            e_tag: Some(ETag::Strong(f.etag)),
            last_modified: timestamp(f.meta.modified().ok()),
            accept_ranges: Some("bytes".into()),
            content_type: Some("application/octet-stream".to_string()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let dir = self.require_bucket(&req.input.bucket).await?;
        self.remove(&dir, &req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        let dir = self.require_bucket(&i.bucket).await?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in i.delete.objects {
            match self.remove(&dir, &i.bucket, &o.key).await {
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(o.key),
                    ..Default::default()
                }),
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    key: Some(o.key),
                    ..Default::default()
                }),
            }
        }
        let quiet = i.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let i = &req.input;
        self.require_bucket(&i.bucket).await?;
        Self::store_key(&i.bucket, &i.key)?;
        self.check_disk()?;
        let owner = req.credentials.as_ref().map(|c| c.access_key.clone());
        let id = self.uploads.create(&i.bucket, &i.key, owner).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(req.input.bucket),
            key: Some(req.input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let owner = req.credentials.as_ref().map(|c| c.access_key.clone());
        let i = req.input;
        self.check_disk()?;
        let etag = self
            .uploads
            .put_part(
                &i.upload_id,
                &i.bucket,
                &i.key,
                owner,
                i.part_number,
                i.body,
                i.content_length,
                i.content_md5.as_deref(),
            )
            .await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let owner = req.credentials.as_ref().map(|c| c.access_key.clone());
        let i = req.input;
        let key = Self::store_key(&i.bucket, &i.key)?;
        self.check_disk()?;
        let parts = i.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        let (meta, etag) = self
            .uploads
            .complete(self, &i.upload_id, &i.bucket, &i.key, &key, owner, parts)
            .await?;
        self.arrived(&meta).await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(i.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", i.bucket, i.key)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let owner = req.credentials.as_ref().map(|c| c.access_key.clone());
        let i = req.input;
        self.uploads.abort(&i.upload_id, &i.bucket, &i.key, owner).await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}
