//! The asset store against real object stores: S3 (`moto_server`) and
//! Azure Blob (Azurite), each started by the test on a free loopback port.
//! Fragments go in and come back byte-identical, list in time order, and
//! are deleted; absent and corrupt objects read as such.

use std::sync::Arc;

use anyhow::{Result, ensure};
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use object_store::ObjectStoreExt as _;
use sluice::media::segmenter::Fragment;
use sluice::storage::{AssetStore, FragmentKey, StorageConfig, StorageError, encode_fragment};
use sluice_sdk::plugin::SampleEntry;
use sluice_tests::objstore::ObjectServer;

fn fragment(start: u64, sizes: &[u32], discontinuity: bool) -> Fragment {
    let total: u32 = sizes.iter().sum();
    let data: Vec<u8> = (0..total)
        .map(|i| (i.wrapping_mul(31) ^ (start as u32)) as u8)
        .collect();
    Fragment {
        start,
        duration: 2 * 90_000,
        samples: sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| SampleEntry {
                duration: 3000,
                size,
                composition_offset: (i as i32 % 3) * 3000 - 3000,
                keyframe: i == 0,
            })
            .collect(),
        data: Bytes::from(data),
        discontinuity,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn open(cfg: &StorageConfig) -> Result<AssetStore> {
    let unused = sluice_tests::tempdir::TempDir::new("sluice-storage")?;
    Ok(AssetStore::open(cfg, unused.path())?)
}

/// Every object under the store's prefix.
async fn all_objects(store: &AssetStore, prefix: &str) -> Result<Vec<String>> {
    let p = object_store::path::Path::from(prefix);
    let metas: Vec<_> = store.object_store().list(Some(&p)).try_collect().await?;
    Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
}

/// The whole cycle on one store: put, get back, list, corrupt, delete.
async fn exercise(store: &AssetStore, prefix: &str) -> Result<()> {
    store.check_writable().await?;
    let key = |inc, t, s| FragmentKey::new("ch-1", inc, t, s).expect("key");
    // Video (one large fragment, several samples) and audio, out of order.
    let puts = [
        (1u32, 180_000u64, vec![200_000, 30_000, 31_000, 29_000]),
        (1, 0, vec![150_000, 20_000]),
        (2, 0, vec![400, 410, 420]),
        (1, 360_000, vec![1]),
        (2, 180_000, vec![]),
    ];
    for (t, s, sizes) in &puts {
        store
            .put_fragment(&key(7, *t, *s), &fragment(*s, sizes, *s == 0))
            .await?;
    }
    // Another incarnation of the same channel, left alone by deletes.
    store
        .put_fragment(&key(8, 1, 0), &fragment(0, &[5], false))
        .await?;

    for (t, s, sizes) in &puts {
        let want = fragment(*s, sizes, *s == 0);
        let got = store
            .get_fragment(&key(7, *t, *s))
            .await?
            .expect("stored fragment present");
        ensure!(
            encode_fragment(&got) == encode_fragment(&want),
            "track {t} start {s} differs"
        );
        ensure!(got.data == want.data && got.samples == want.samples);
    }
    ensure!(store.get_fragment(&key(7, 3, 0)).await?.is_none());
    ensure!(
        store.list_fragments("ch-1", 7).await?
            == vec![(1, 0), (1, 180_000), (1, 360_000), (2, 0), (2, 180_000)]
    );

    // Corrupt objects: garbage and a truncated valid object.
    let garbage = key(7, 5, 0);
    let path = store.fragment_path(&garbage)?;
    store
        .object_store()
        .put(&path, Bytes::from_static(b"not a fragment").into())
        .await?;
    let err = store.get_fragment(&garbage).await;
    ensure!(
        matches!(err, Err(StorageError::Corrupt { .. })),
        "garbage read as {err:?}"
    );
    let torn = key(7, 5, 90_000);
    let bytes = encode_fragment(&fragment(90_000, &[100, 100], false));
    store
        .object_store()
        .put(
            &store.fragment_path(&torn)?,
            bytes.slice(..bytes.len() - 1).into(),
        )
        .await?;
    let err = store.get_fragment(&torn).await;
    ensure!(
        matches!(&err, Err(StorageError::Corrupt { reason, .. }) if reason.contains("bytes")),
        "torn object read as {err:?}"
    );

    // Delete some (and one that does not exist), then the incarnation.
    store
        .delete_fragments(vec![key(7, 1, 0), key(7, 2, 180_000), key(7, 9, 9)])
        .await?;
    ensure!(store.get_fragment(&key(7, 1, 0)).await?.is_none());
    ensure!(
        store.list_fragments("ch-1", 7).await?
            == vec![(1, 180_000), (1, 360_000), (2, 0), (5, 0), (5, 90_000)]
    );
    store.delete_incarnation("ch-1", 7).await?;
    ensure!(store.list_fragments("ch-1", 7).await?.is_empty());
    ensure!(store.get_fragment(&key(7, 1, 180_000)).await?.is_none());
    ensure!(store.list_fragments("ch-1", 8).await? == vec![(1, 0)]);
    store.delete_incarnation("ch-1", 8).await?;
    // Nothing left under the prefix, the readiness probe included.
    let left = all_objects(store, prefix).await?;
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

#[test]
fn s3_on_moto() -> Result<()> {
    let server = ObjectServer::moto()?;
    server.create_bucket("sluice-test")?;
    let store = open(&server.s3_config("sluice-test", "run-1/assets"))?;
    assert!(
        store.describe().starts_with("s3 bucket=sluice-test"),
        "{}",
        store.describe()
    );
    assert!(!store.describe().contains("test test"), "no secrets");
    rt().block_on(exercise(&store, "run-1/assets"))?;

    // A bucket that does not exist: a backend error at once, not a hang
    // (reads would see every fragment as absent: S3 says 404 for both).
    let missing = open(&server.s3_config("no-such-bucket", ""))?;
    let err = rt().block_on(missing.check_writable());
    assert!(
        matches!(&err, Err(StorageError::Backend(e)) if matches!(**e, object_store::Error::NotFound { .. })),
        "missing bucket: {err:?}"
    );
    Ok(())
}

#[test]
fn azure_on_azurite() -> Result<()> {
    let server = ObjectServer::azurite()?;
    server.create_container("sluice-test")?;
    let store = open(&server.azure_config("sluice-test", "run-1"))?;
    assert!(
        store
            .describe()
            .starts_with("azure account=devstoreaccount1"),
        "{}",
        store.describe()
    );
    rt().block_on(exercise(&store, "run-1"))?;

    // Azurite checks signatures: a wrong key is refused.
    let mut cfg = server.azure_config("sluice-test", "run-2");
    cfg.azure.access_key = Some("d3Jvbmcta2V5".to_owned());
    let err = rt().block_on(open(&cfg)?.check_writable());
    assert!(
        matches!(&err, Err(StorageError::Backend(e)) if matches!(**e, object_store::Error::PermissionDenied { .. })),
        "wrong key: {err:?}"
    );
    Ok(())
}

#[test]
fn one_store_serves_concurrent_readers() -> Result<()> {
    // The read cache coalesces: many readers, one Arc.
    let server = ObjectServer::moto()?;
    server.create_bucket("sluice-concurrent")?;
    let store = open(&server.s3_config("sluice-concurrent", ""))?;
    rt().block_on(async {
        let key = FragmentKey::new("ch-2", 1, 1, 0)?;
        store
            .put_fragment(&key, &fragment(0, &[50_000, 50_000], true))
            .await?;
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let s = store.clone();
                let k = key.clone();
                tokio::spawn(async move { s.get_fragment(&k).await })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await??.expect("present"));
        }
        ensure!(got.iter().all(|f| Arc::ptr_eq(f, &got[0])));
        store.delete_incarnation("ch-2", 1).await?;
        ensure!(store.list_fragments("ch-2", 1).await?.is_empty());
        Ok(())
    })
}
