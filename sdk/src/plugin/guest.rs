//! Component glue for `wasm32`: the generated bindings (kept private to the
//! SDK) and conversions between them and the SDK's own types. Used only by
//! the expansion of [`export!`](crate::export).

#![allow(missing_docs)]

use super::LogLevel;

#[cfg(feature = "packager")]
pub mod packager_world {
    wit_bindgen::generate!({
        path: "../wit/0.1.0",
        world: "packager",
        pub_export_macro: true,
        export_macro_name: "__export_packager_world",
        default_bindings_module: "sluice_sdk::plugin::guest::packager_world",
        generate_all,
    });
}

#[cfg(feature = "ingest-adapter")]
pub mod ingest_world {
    wit_bindgen::generate!({
        path: "../wit/0.1.0",
        world: "ingest-adapter",
        pub_export_macro: true,
        export_macro_name: "__export_ingest_world",
        default_bindings_module: "sluice_sdk::plugin::guest::ingest_world",
        generate_all,
    });
}

#[cfg(feature = "ingest-adapter")]
pub use ingest_glue::*;
#[cfg(feature = "packager")]
pub use packager_glue::*;

pub fn log(level: LogLevel, message: &str) {
    #[cfg(feature = "packager")]
    {
        use packager_world::sluice::plugin::types::LogLevel as L;
        let level = match level {
            LogLevel::Debug => L::Debug,
            LogLevel::Info => L::Info,
            LogLevel::Warn => L::Warn,
            LogLevel::Error => L::Error,
        };
        packager_world::sluice::plugin::log::log(level, message);
    }
    #[cfg(all(feature = "ingest-adapter", not(feature = "packager")))]
    {
        use ingest_world::sluice::plugin::types::LogLevel as L;
        let level = match level {
            LogLevel::Debug => L::Debug,
            LogLevel::Info => L::Info,
            LogLevel::Warn => L::Warn,
            LogLevel::Error => L::Error,
        };
        ingest_world::sluice::plugin::log::log(level, message);
    }
    #[cfg(not(any(feature = "packager", feature = "ingest-adapter")))]
    let _ = (level, message);
}

#[cfg(feature = "packager")]
mod packager_glue {
    use super::packager_world::exports::sluice::plugin::packaging as wp;
    use super::packager_world::sluice::plugin::presentation as wv;
    use super::packager_world::sluice::plugin::types as wt;
    use crate::plugin::{
        BodyPart, CachePolicy, Fragment, Packager, PresentationInfo, PresentationState, Request,
        SampleEntry, TrackInfo, TrackKind, View,
    };

    fn kind_from(k: wt::TrackKind) -> TrackKind {
        match k {
            wt::TrackKind::Video => TrackKind::Video,
            wt::TrackKind::Audio => TrackKind::Audio,
            wt::TrackKind::Subtitle => TrackKind::Subtitle,
            wt::TrackKind::Data => TrackKind::Data,
        }
    }

    fn track_from(t: wt::TrackInfo) -> TrackInfo {
        TrackInfo {
            id: t.id,
            kind: kind_from(t.kind),
            fourcc: t.fourcc,
            codec: t.codec,
            timescale: t.timescale,
            codec_private: t.codec_private,
            stream: t.stream,
            bitrate: t.bitrate,
            language: t.language,
            width: t.width,
            height: t.height,
            sample_rate: t.sample_rate,
            channels: t.channels,
        }
    }

    /// The presentation imports, seen through the SDK's [`View`].
    struct GuestView;

    impl View for GuestView {
        fn info(&self) -> PresentationInfo {
            let i = wv::info();
            PresentationInfo {
                state: match i.state {
                    wv::PresentationState::Live => PresentationState::Live,
                    wv::PresentationState::Ended => PresentationState::Ended,
                },
                fragment_duration_ms: i.fragment_duration_ms,
                epoch_ms: i.epoch_ms,
                window_ms: i.window_ms,
            }
        }

        fn tracks(&self) -> Vec<TrackInfo> {
            wv::tracks().into_iter().map(track_from).collect()
        }

        fn fragments(&self, track: u32, from: u64, limit: u32) -> Vec<Fragment> {
            let page = wv::timeline(track, from, limit);
            // A host that sent lists of different lengths gets the common part.
            let n = [
                page.durations.len(),
                page.sample_counts.len(),
                page.sizes.len(),
                page.discontinuity_sequences.len(),
                page.flags.len(),
            ]
            .into_iter()
            .fold(page.starts.len(), usize::min);
            (0..n)
                .map(|i| Fragment {
                    start: page.starts[i],
                    duration: page.durations[i],
                    sample_count: page.sample_counts[i],
                    size: page.sizes[i],
                    discontinuity: page.flags[i] & 1 != 0,
                    discontinuity_sequence: page.discontinuity_sequences[i],
                })
                .collect()
        }

        fn samples(&self, track: u32, start: u64) -> Option<Vec<SampleEntry>> {
            wv::samples(track, start).map(|v| {
                v.into_iter()
                    .map(|s| SampleEntry {
                        duration: s.duration,
                        size: s.size,
                        composition_offset: s.composition_offset,
                        keyframe: s.keyframe,
                    })
                    .collect()
            })
        }

        fn sample_data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Vec<u8>> {
            wv::sample_data(track, start, offset, length)
        }
    }

    pub fn packager_info<P: Packager>() -> wp::PackagerInfo {
        let i = P::info();
        wp::PackagerInfo {
            name: i.name,
            version: i.version,
            description: i.description,
            formats: i.formats,
        }
    }

    pub fn packager_handle<P: Packager>(req: wp::Request) -> wp::Response {
        let req = Request {
            format: req.format,
            path: req.path,
            query: req.query,
            headers: req.headers,
        };
        let r = P::handle(&req, &GuestView);
        wp::Response {
            status: r.status,
            content_type: r.content_type,
            cache: match r.cache {
                CachePolicy::NoStore => wp::CachePolicy::NoStore,
                CachePolicy::MaxAge(s) => wp::CachePolicy::MaxAge(s),
                CachePolicy::Immutable => wp::CachePolicy::Immutable,
            },
            headers: r.headers,
            body: r
                .body
                .into_iter()
                .map(|p| match p {
                    BodyPart::Bytes(b) => wp::BodyPart::Bytes(b),
                    BodyPart::SampleData(d) => wp::BodyPart::SampleData(wp::DataRef {
                        track: d.track,
                        start: d.start,
                        offset: d.offset,
                        length: d.length,
                    }),
                })
                .collect(),
        }
    }
}

#[cfg(feature = "ingest-adapter")]
mod ingest_glue {
    use super::ingest_world;
    use super::ingest_world::exports::sluice::plugin::ingest as wi;
    use crate::plugin::{
        AdapterInfo, AuthStage, Event, IngestAdapter, SessionConfig, SessionError, TrackInfo,
        TrackKind,
    };

    pub fn adapter_info<A: IngestAdapter>() -> wi::AdapterInfo {
        let AdapterInfo {
            name,
            version,
            description,
            extension,
        } = A::info();
        wi::AdapterInfo {
            name,
            version,
            description,
            extension,
        }
    }

    pub fn session_new<A: IngestAdapter>(c: wi::SessionConfig) -> A {
        A::new(SessionConfig {
            remote_addr: c.remote_addr,
            max_message_size: c.max_message_size,
            max_tracks: c.max_tracks,
            stream: c.stream,
        })
    }

    type IngestTypes = ingest_world::sluice::plugin::types::TrackInfo;

    fn track_to(t: TrackInfo) -> IngestTypes {
        use ingest_world::sluice::plugin::types::TrackKind as K;
        IngestTypes {
            id: t.id,
            kind: match t.kind {
                TrackKind::Video => K::Video,
                TrackKind::Audio => K::Audio,
                TrackKind::Subtitle => K::Subtitle,
                TrackKind::Data => K::Data,
            },
            fourcc: t.fourcc,
            codec: t.codec,
            timescale: t.timescale,
            codec_private: t.codec_private,
            stream: t.stream,
            bitrate: t.bitrate,
            language: t.language,
            width: t.width,
            height: t.height,
            sample_rate: t.sample_rate,
            channels: t.channels,
        }
    }

    fn events_to(events: Vec<Event>) -> Vec<wi::Event> {
        events
            .into_iter()
            .map(|e| match e {
                Event::Authorize(a) => wi::Event::Authorize(wi::AuthRequest {
                    id: a.id,
                    stage: match a.stage {
                        AuthStage::Connect => wi::AuthStage::Connect,
                        AuthStage::Publish => wi::AuthStage::Publish,
                    },
                    app: a.app,
                    stream: a.stream,
                    tc_url: a.tc_url,
                }),
                Event::Track(t) => wi::Event::Track(track_to(t)),
                Event::Samples(s) => wi::Event::Samples(
                    s.into_iter()
                        .map(|s| wi::Sample {
                            track: s.track,
                            dts: s.dts,
                            composition_offset: s.composition_offset,
                            duration: s.duration,
                            keyframe: s.keyframe,
                            data: s.data,
                        })
                        .collect(),
                ),
                Event::Send(b) => wi::Event::Send(b),
                Event::EndOfStream(r) => wi::Event::EndOfStream(r),
            })
            .collect()
    }

    fn error_to(e: SessionError) -> wi::SessionError {
        match e {
            SessionError::Malformed(m) => wi::SessionError::Malformed(m),
            SessionError::Limit(m) => wi::SessionError::Limit(m),
            SessionError::Unsupported(m) => wi::SessionError::Unsupported(m),
        }
    }

    pub fn session_feed<A: IngestAdapter>(
        s: &mut A,
        data: Vec<u8>,
    ) -> Result<Vec<wi::Event>, wi::SessionError> {
        s.feed(&data).map(events_to).map_err(error_to)
    }

    pub fn session_authorize<A: IngestAdapter>(
        s: &mut A,
        id: u32,
        verdict: Result<(), String>,
    ) -> Result<Vec<wi::Event>, wi::SessionError> {
        s.authorize(id, verdict).map(events_to).map_err(error_to)
    }

    pub fn session_close<A: IngestAdapter>(s: &mut A) -> Vec<wi::Event> {
        events_to(s.close())
    }
}
