//! Conversions between the SDK types (what the rest of the host speaks) and
//! the types `bindgen!` generated for `sluice:plugin@0.1.0`.

use sluice_sdk::plugin as sdk;

use super::bindings::ingest::exports::sluice::plugin::ingest as wi;
use super::bindings::packager::exports::sluice::plugin::packaging as wp;
use super::state::track_from;

pub(crate) fn packager_info(i: wp::PackagerInfo) -> sdk::PackagerInfo {
    sdk::PackagerInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        formats: i.formats,
    }
}

pub(crate) fn adapter_info(i: wi::AdapterInfo) -> sdk::AdapterInfo {
    sdk::AdapterInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        extension: i.extension,
    }
}

pub(crate) fn request(r: &sdk::Request) -> wp::Request {
    wp::Request {
        format: r.format.clone(),
        path: r.path.clone(),
        query: r.query.clone(),
        headers: r.headers.clone(),
    }
}

pub(crate) fn response(r: wp::Response) -> sdk::Response {
    sdk::Response {
        status: r.status,
        content_type: r.content_type,
        cache: match r.cache {
            wp::CachePolicy::NoStore => sdk::CachePolicy::NoStore,
            wp::CachePolicy::MaxAge(s) => sdk::CachePolicy::MaxAge(s),
            wp::CachePolicy::Immutable => sdk::CachePolicy::Immutable,
        },
        headers: r.headers,
        body: r
            .body
            .into_iter()
            .map(|p| match p {
                wp::BodyPart::Bytes(b) => sdk::BodyPart::Bytes(b),
                wp::BodyPart::SampleData(d) => sdk::BodyPart::SampleData(sdk::DataRef {
                    track: d.track,
                    start: d.start,
                    offset: d.offset,
                    length: d.length,
                }),
            })
            .collect(),
    }
}

pub(crate) fn session_config(c: sdk::SessionConfig) -> wi::SessionConfig {
    wi::SessionConfig {
        remote_addr: c.remote_addr,
        max_message_size: c.max_message_size,
        max_tracks: c.max_tracks,
        stream: c.stream,
    }
}

pub(crate) fn events(events: Vec<wi::Event>) -> Vec<sdk::Event> {
    events
        .into_iter()
        .map(|e| match e {
            wi::Event::Authorize(a) => sdk::Event::Authorize(sdk::AuthRequest {
                id: a.id,
                stage: match a.stage {
                    wi::AuthStage::Connect => sdk::AuthStage::Connect,
                    wi::AuthStage::Publish => sdk::AuthStage::Publish,
                },
                app: a.app,
                stream: a.stream,
                tc_url: a.tc_url,
            }),
            wi::Event::Track(t) => sdk::Event::Track(track_from(t)),
            wi::Event::Samples(s) => sdk::Event::Samples(
                s.into_iter()
                    .map(|s| sdk::Sample {
                        track: s.track,
                        dts: s.dts,
                        composition_offset: s.composition_offset,
                        duration: s.duration,
                        keyframe: s.keyframe,
                        data: s.data,
                    })
                    .collect(),
            ),
            wi::Event::Send(b) => sdk::Event::Send(b),
            wi::Event::EndOfStream(r) => sdk::Event::EndOfStream(r),
        })
        .collect()
}

pub(crate) fn session_error(e: wi::SessionError) -> sdk::SessionError {
    match e {
        wi::SessionError::Malformed(m) => sdk::SessionError::Malformed(m),
        wi::SessionError::Limit(m) => sdk::SessionError::Limit(m),
        wi::SessionError::Unsupported(m) => sdk::SessionError::Unsupported(m),
    }
}
