//! The S3 operations over the local store (`data_dir/store/<bucket>/<key>`): buckets are its
//! top folders, objects its files. s3s parses requests, checks signatures and writes the XML;
//! this answers them. An object that arrives (PUT, multipart, copy) is routed as one put with
//! `fogd put`: the services watching its path are queued in the same way.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use super::errors::{blocking, io_err, store_err};
use super::listing::{max_keys, say, timestamp};
pub use super::store::FogS3;
use super::store::{file_stream, EMPTY_MD5};
use crate::store::root::{Walk, Walked};

#[async_trait::async_trait]
impl S3 for FogS3 {
    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let root = self.root()?;
        let buckets = blocking(move || {
            let mut out = Vec::new();
            let rd = root.dir().entries().map_err(|e| io_err(root.path(), e))?;
            for e in rd.flatten() {
                let Ok(name) = e.file_name().into_string() else {
                    continue;
                };
                // file_type does not follow links: a linked "bucket" is not one.
                if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let created = e
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .map(|t| t.into_std());
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
        let bucket = req.input.bucket.clone();
        Self::check_bucket_name(&bucket)?;
        let root = self.root()?;
        blocking(move || match root.dir().create_dir(&bucket) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(s3_error!(BucketAlreadyOwnedByYou))
            }
            Err(e) => Err(io_err(&root.shown(&bucket), e)),
        })
        .await?;
        // A new bucket starts private, whatever an older one of the same name was.
        self.forget_settings(&req.input.bucket).await?;
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
        let bucket = req.input.bucket.clone();
        // The same rule as DELETE /system/buckets/{b}: a bucket a service or the ingest uses stays.
        if let Some(user) = crate::gateway::buckets::in_use(&self.rt, &bucket) {
            let mut e = s3s::S3Error::with_message(
                s3s::S3ErrorCode::Custom("XFogdBucketInUse".into()),
                format!("bucket `{bucket}` is used by {user}: delete or change that first"),
            );
            e.set_status_code(axum::http::StatusCode::CONFLICT);
            return Err(e);
        }
        let (root, dir) = self.bucket_handle(&bucket)?;
        let b = bucket.clone();
        blocking(move || {
            let mut keys = Walk::new(&dir, "", None, false).map_err(|e| io_err(&root.shown(&b), e))?;
            let holds_object = keys.any(|k| !matches!(k, Ok(Walked::Key(f)) if f.is_folder()));
            if holds_object {
                return Err(s3_error!(BucketNotEmpty, "bucket `{b}` holds objects"));
            }
            root.dir()
                .remove_dir_all(&b)
                .map_err(|e| io_err(&root.shown(&b), e))
        })
        .await?;
        self.forget_settings(&bucket).await?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let after = match (&i.continuation_token, &i.start_after) {
            (Some(t), _) => Some(t.clone()),
            (None, s) => s.clone(),
        };
        let url = i.encoding_type.as_ref().is_some_and(|e| e.as_str() == "url");
        let max = max_keys(i.max_keys);
        let page = self
            .page(&i.bucket, i.prefix.as_deref(), i.delimiter.as_deref(), after, max)
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
        let url = i.encoding_type.as_ref().is_some_and(|e| e.as_str() == "url");
        let max = max_keys(i.max_keys);
        let page = self
            .page(
                &i.bucket,
                i.prefix.as_deref(),
                i.delimiter.as_deref(),
                i.marker.clone(),
                max,
            )
            .await?;
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
        self.require_bucket(&i.bucket).await?;
        let key = Self::store_key(&i.bucket, &i.key)?;
        self.check_raw_write(&i.bucket, &i.key, req.credentials.as_ref())
            .await?;
        self.check_disk()?;
        if i.key.ends_with('/') {
            // A folder marker (OSCAR makes one per input path): a folder, never a trigger.
            if i.content_length.unwrap_or(0) > 0 {
                return Err(s3_error!(
                    InvalidArgument,
                    "a key ending in `/` names a folder and takes no data"
                ));
            }
            let root = self.root()?;
            blocking(move || {
                root.make_folders(&key)
                    .map(|_| ())
                    .map_err(|e| io_err(&root.shown(&key), e))
            })
            .await?;
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
        let Some(file) = src.file else {
            return Err(s3_error!(InvalidArgument, "a folder marker cannot be copied"));
        };
        self.require_bucket(&i.bucket).await?;
        let dst = Self::store_key(&i.bucket, &i.key)?;
        self.check_raw_write(&i.bucket, &i.key, req.credentials.as_ref())
            .await?;
        self.check_disk()?;
        // Copied from the file found beneath the store, never by its path again.
        let mut w = self.store.writer(&dst).await.map_err(store_err)?;
        let mut from = tokio::fs::File::from_std(file);
        let mut buf = vec![0u8; super::store::READ_CHUNK];
        loop {
            use tokio::io::AsyncReadExt;
            let n = from
                .read(&mut buf)
                .await
                .map_err(|e| io_err(&self.store.path_of(&dst), e))?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n]).await.map_err(store_err)?;
        }
        let (meta, etag) = w.commit(None).await.map_err(store_err)?;
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
        // Raw footage's size, digest and time are as much a read as its bytes.
        self.refuse_raw(&req.input.bucket, &req.input.key)?;
        let f = self.find(&req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(f.stat.size as i64),
            e_tag: Some(ETag::Strong(f.etag)),
            last_modified: timestamp(f.stat.modified),
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
        let len = f.stat.size;
        let (range, content_range) = match &i.range {
            None => (0..len, None),
            Some(r) => {
                let r = r.check(len)?;
                let cr = format!("bytes {}-{}/{len}", r.start, r.end.saturating_sub(1));
                (r, Some(cr))
            }
        };
        let body = match f.file {
            None => None,
            Some(file) => {
                let mut file = tokio::fs::File::from_std(file);
                let shown = self.store.path_of(&format!("{}/{}", i.bucket, i.key));
                file.seek(std::io::SeekFrom::Start(range.start))
                    .await
                    .map_err(|e| io_err(&shown, e))?;
                Some(StreamingBlob::wrap(file_stream(file, range.end - range.start)))
            }
        };
        Ok(S3Response::new(GetObjectOutput {
            body,
            content_length: Some((range.end - range.start) as i64),
            content_range,
            e_tag: Some(ETag::Strong(f.etag)),
            last_modified: timestamp(f.stat.modified),
            accept_ranges: Some("bytes".into()),
            content_type: Some("application/octet-stream".to_string()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        self.check_raw_delete(&req.input.bucket, &req.input.key, req.credentials.as_ref())?;
        self.remove(&req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        self.require_bucket(&i.bucket).await?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in i.delete.objects {
            let r = match self.check_raw_delete(&i.bucket, &o.key, req.credentials.as_ref()) {
                Ok(()) => self.remove(&i.bucket, &o.key).await,
                Err(e) => Err(e),
            };
            match r {
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
        self.check_raw_write(&i.bucket, &i.key, req.credentials.as_ref())
            .await?;
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
                &|| self.check_disk(),
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

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let caller = req.credentials.as_ref().map(|c| c.access_key.clone());
        let i = req.input;
        self.require_bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let (found, truncated) = self.uploads.list(&i.bucket, &prefix, caller).await?;
        let uploads = found
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(u.key),
                upload_id: Some(u.id),
                initiated: timestamp(u.initiated),
                initiator: u.owner.clone().map(|o| Initiator {
                    id: Some(o.clone()),
                    display_name: Some(o),
                }),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: i.prefix,
            is_truncated: Some(truncated),
            max_uploads: Some(1000),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }
}
