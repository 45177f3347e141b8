//! Real-mode test: many writers at once against three `shoal-node`
//! processes, their writes batched into shared log entries. A binary of its
//! own, so that its load does not slow the timed tests of the others.
#![cfg(not(madsim))]

mod support;

use std::time::Duration;

use bytes::Bytes;
use shoal::client::{Client, ClientConfig, SharedConnections};
use support::cluster::start_group;

#[tokio::test]
async fn concurrent_writers_sharing_two_connections_are_each_answered_their_own_outcome() {
    // Writes that arrive together are proposed as one log entry; every
    // writer must still get its own answer (a swap that won or lost, a
    // delete that found its key or not).
    let group = start_group(3);
    let pools = [SharedConnections::default(), SharedConnections::default()];
    let writers: Vec<_> = (0..32u32)
        .map(|w| {
            let mut config = ClientConfig::new(group.endpoints());
            config.deadline = Duration::from_secs(20);
            config.connections = Some(pools[w as usize % 2].clone());
            tokio::spawn(async move {
                let mut client = Client::new(config);
                for i in 0..20 {
                    let key = format!("w{w}-{i}");
                    client.put(key.clone(), "a").await.unwrap();
                    let lost =
                        client.compare_and_swap(key.clone(), Some("x".into()), Some("y".into()));
                    assert!(
                        !lost.await.unwrap().swapped,
                        "{key}: a swap from a value never held"
                    );
                    let won =
                        client.compare_and_swap(key.clone(), Some("a".into()), Some("b".into()));
                    assert!(
                        won.await.unwrap().swapped,
                        "{key}: the swap from its own put"
                    );
                    if i % 2 == 1 {
                        assert!(client.delete(key.clone()).await.unwrap(), "{key}: deleted");
                        assert!(!client.delete(key.clone()).await.unwrap(), "{key}: gone");
                    }
                }
                client
            })
        })
        .collect();
    for writer in writers {
        let mut client = writer.await.unwrap();
        assert_eq!(client.get("w0-0").await.unwrap(), Some(Bytes::from("b")));
        assert_eq!(client.get("w0-1").await.unwrap(), None);
    }
}
