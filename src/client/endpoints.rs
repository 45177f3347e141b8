//! Every member of a cluster, one by one: what `shoal endpoint status` and
//! `shoal endpoint health` show, like `etcdctl endpoint status -w table`.

use std::time::Duration;

use super::link::{kv, GroupLink};
use super::{routed, Client, ClientConfig, ClientError, Routing};
use crate::proto::{StatusRequest, StatusResponse};

/// One member as it answered (or did not).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Its group: "group", "controller" or "group N".
    pub group: String,
    /// Its address.
    pub addr: String,
    /// Its answer, and how long it took; or why there was none.
    pub status: Result<(StatusResponse, Duration), String>,
}

impl Client {
    /// Every member of the cluster with its status, group by group (the
    /// standalone group's members as configured; in a sharded cluster the
    /// controller's, then each data group's from the latest configuration).
    pub async fn endpoints(&mut self) -> Result<Vec<Endpoint>, ClientError> {
        let groups: Vec<(String, Vec<String>)> = match self.config.routing {
            Routing::Group => vec![("group".into(), self.config.endpoints.clone())],
            Routing::ByNodes => vec![("nodes".into(), self.config.endpoints.clone())],
            Routing::Sharded => {
                let config = self.query(None).await?;
                // The controller's members as its leader knows them.
                let controller = match self.status().await {
                    Ok(status) => status.members.into_values().collect(),
                    Err(_) => self.config.endpoints.clone(),
                };
                let data = config.groups.iter().map(|(group, members)| {
                    (
                        format!("group {group}"),
                        members.values().cloned().collect(),
                    )
                });
                std::iter::once(("controller".into(), controller))
                    .chain(data)
                    .collect()
            }
        };
        let mut endpoints = Vec::new();
        for (group, members) in groups {
            for addr in members {
                let status = status_at(&self.config, &addr).await;
                endpoints.push(Endpoint {
                    group: group.clone(),
                    addr,
                    status,
                });
            }
        }
        Ok(endpoints)
    }
}

/// The status of the one member at `addr`, and how long it took to answer.
async fn status_at(
    config: &ClientConfig,
    addr: &str,
) -> Result<(StatusResponse, Duration), String> {
    let config = ClientConfig {
        deadline: config.attempt_timeout,
        ..config.clone()
    };
    let started = tokio::time::Instant::now();
    let mut link = GroupLink::new(vec![addr.to_string()], &mut crate::runtime::rng());
    let deadline = started + config.deadline;
    let status = link
        .call(&config, deadline, |ch| async move {
            kv(ch).status(routed(StatusRequest {})).await
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, started.elapsed()))
}

/// The endpoints as a table, one row per member; `LAG` is how many entries
/// the member has applied fewer than the most advanced member of its group.
pub fn table(endpoints: &[Endpoint]) -> String {
    let mut rows = vec![[
        "GROUP", "ID", "ADDRESS", "ROLE", "TERM", "LEADER", "APPLIED", "LAG", "KEYS",
    ]
    .map(String::from)
    .to_vec()];
    for endpoint in endpoints {
        let most = endpoints
            .iter()
            .filter(|e| e.group == endpoint.group)
            .filter_map(|e| e.status.as_ref().ok())
            .map(|(s, _)| s.last_applied)
            .max()
            .unwrap_or(0);
        let row = match &endpoint.status {
            Ok((s, _)) => vec![
                endpoint.group.clone(),
                s.node_id.to_string(),
                endpoint.addr.clone(),
                s.role.clone(),
                s.term.to_string(),
                s.leader_id.map_or("-".into(), |l| l.to_string()),
                s.last_applied.to_string(),
                (most - s.last_applied).to_string(),
                s.keys.to_string(),
            ],
            Err(e) => {
                let mut row = vec![endpoint.group.clone(), "-".into(), endpoint.addr.clone()];
                row.push(format!("unreachable: {e}"));
                row.extend(["-"; 5].map(String::from));
                row
            }
        };
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let line = |row: &Vec<String>| {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let rule: String = {
        let dashes: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        format!("+-{}-+\n", dashes.join("-+-"))
    };
    let mut out = rule.clone() + &line(&rows[0]) + &rule;
    for row in &rows[1..] {
        out += &line(row);
    }
    out + &rule
}

/// Whether a member is healthy: it answered, and knows a leader.
pub fn healthy(endpoint: &Endpoint) -> Result<Duration, String> {
    match &endpoint.status {
        Ok((status, took)) if status.leader_id.is_some() => Ok(*took),
        Ok(_) => Err("no leader known".into()),
        Err(e) => Err(e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(group: &str, id: u64, role: &str, applied: u64) -> Endpoint {
        Endpoint {
            group: group.into(),
            addr: format!("10.0.0.{id}:7000"),
            status: Ok((
                StatusResponse {
                    node_id: id,
                    leader_id: Some(1),
                    term: 3,
                    role: role.into(),
                    last_applied: applied,
                    members: Default::default(),
                    peer_members: Default::default(),
                    keys: 10 * id,
                },
                Duration::from_millis(2),
            )),
        }
    }

    #[test]
    fn the_table_shows_each_member_and_its_lag() {
        let endpoints = vec![
            member("group 1", 1, "leader", 40),
            member("group 1", 2, "follower", 37),
            Endpoint {
                group: "group 1".into(),
                addr: "10.0.0.3:7000".into(),
                status: Err("connection refused".into()),
            },
        ];
        let expect = "\
+---------+----+---------------+---------------------------------+------+--------+---------+-----+------+
| GROUP   | ID | ADDRESS       | ROLE                            | TERM | LEADER | APPLIED | LAG | KEYS |
+---------+----+---------------+---------------------------------+------+--------+---------+-----+------+
| group 1 | 1  | 10.0.0.1:7000 | leader                          | 3    | 1      | 40      | 0   | 10   |
| group 1 | 2  | 10.0.0.2:7000 | follower                        | 3    | 1      | 37      | 3   | 20   |
| group 1 | -  | 10.0.0.3:7000 | unreachable: connection refused | -    | -      | -       | -   | -    |
+---------+----+---------------+---------------------------------+------+--------+---------+-----+------+
";
        assert_eq!(table(&endpoints), expect);
        assert!(healthy(&endpoints[0]).is_ok());
        assert!(healthy(&endpoints[2]).is_err());
    }
}
