//! The whole recording cycle with assets in real object stores: S3
//! (`moto_server`) and Azure Blob (Azurite), each started by the test. An
//! encoder pushes into a program; after the program stops and the server
//! restarts (nothing left in memory), the VOD is read back from the object
//! store and decodes; deleting the asset empties the store's prefix.

use futures_util::TryStreamExt as _;
use sluice::storage::{AssetStore, StorageConfig};
use sluice_tests::objstore::{AZURITE_ACCOUNT, AZURITE_KEY, ObjectServer};
use sluice_tests::{
    Sluice, api, ffprobe_frames, http_get, record_clip, stop_program, tempdir::TempDir,
};

/// Objects under `prefix` in the store `cfg` names.
fn objects(cfg: &StorageConfig, prefix: &str) -> anyhow::Result<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = TempDir::new("sluice-list")?;
    let store = AssetStore::open(cfg, dir.path())?;
    rt.block_on(async {
        let p = object_store::path::Path::from(prefix);
        let metas: Vec<_> = store.object_store().list(Some(&p)).try_collect().await?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    })
}

fn cycle(config: &str, cfg: &StorageConfig, prefix: &str) -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-objstore-e2e")?;
    let s = Sluice::start_in(dir.path(), config, &[])?;
    let asset = record_clip(&s, 12)?;
    let fragments = asset["fragments"].as_u64().unwrap_or(0);
    let stored = objects(cfg, prefix)?;
    assert_eq!(stored.len() as u64, fragments, "{stored:?}");
    assert!(stored.iter().all(|k| k.contains("/ch/ch1/")), "{stored:?}");
    stop_program(&s, "ch1", "show")?;

    // Restarted, the server holds no payload in memory: the VOD comes from
    // the object store.
    assert!(s.terminate()?.success());
    let s = Sluice::start_in(dir.path(), config, &[])?;
    let master = http_get(s.http, "/show/show.ism/Manifest(format=m3u8-cmaf)", &[])?;
    assert_eq!(master.status, 200, "{}", master.text());
    let master = master.text();
    let variant = master
        .lines()
        .find(|l| !l.starts_with('#') && l.ends_with(".m3u8"))
        .unwrap_or_default();
    let (frames, errors) = ffprobe_frames(&s.url(&format!("/show/show.ism/{variant}")), &[])?;
    assert!(errors.trim().is_empty(), "{errors}");
    let video = frames.iter().filter(|f| f.media_type == "video").count();
    assert!((275..=300).contains(&video), "{video} of 300 frames");

    // Deleting the program, then the asset, empties the prefix.
    let (status, _) = api(
        s.admin,
        "DELETE",
        "/api/v1/channels/ch1/programs/show",
        None,
    )?;
    assert_eq!(status, 204);
    let (status, _) = api(s.admin, "DELETE", "/api/v1/assets/show", None)?;
    assert_eq!(status, 204);
    assert_eq!(objects(cfg, prefix)?, Vec::<String>::new());
    let r = http_get(s.http, "/show/show.ism/Manifest(format=m3u8-cmaf)", &[])?;
    assert_eq!(r.status, 404);
    Ok(())
}

#[test]
fn recording_cycle_on_s3() -> anyhow::Result<()> {
    let moto = ObjectServer::moto()?;
    moto.create_bucket("sluice-e2e")?;
    let config = format!(
        "[storage]\nbackend = \"s3\"\nprefix = \"e2e\"\n[storage.s3]\nbucket = \"sluice-e2e\"\n\
         endpoint = \"{}\"\nallow_http = true\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n",
        moto.endpoint()
    );
    cycle(&config, &moto.s3_config("sluice-e2e", "e2e"), "e2e")
}

#[test]
fn recording_cycle_on_azure_blob() -> anyhow::Result<()> {
    let azurite = ObjectServer::azurite()?;
    azurite.create_container("sluice-e2e")?;
    let config = format!(
        "[storage]\nbackend = \"azure\"\nprefix = \"e2e\"\n[storage.azure]\naccount = \"{AZURITE_ACCOUNT}\"\n\
         access_key = \"{AZURITE_KEY}\"\ncontainer = \"sluice-e2e\"\nendpoint = \"{}/{AZURITE_ACCOUNT}\"\n\
         allow_http = true\n",
        azurite.endpoint()
    );
    cycle(&config, &azurite.azure_config("sluice-e2e", "e2e"), "e2e")
}
