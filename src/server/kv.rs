//! The client API: validates requests, sends writes through the Raft log and
//! serves linearizable reads from the state machine.
//!
//! **Forwarding.** A routing client (Shoal's, see [`crate::client::routed`])
//! marks its requests and follows "wrong group" and "not the leader" answers
//! itself. A request without the mark comes from a client that does not
//! route (a script, a generated stub): when this replica cannot answer it
//! (the key's shard is another group's, or this replica does not lead), it
//! forwards the request, unchanged (the same write id), through its routing
//! clients, which mark it, so it travels one hop. A scan without shards from
//! such a client covers every shard of a sharded cluster.

use tonic::{Request, Response, Status};

use super::replica::Replica;
use crate::client::link::kv;
use crate::client::{routed, ROUTED_HEADER};
use crate::error::KvError;
use crate::limits::{check_key, check_value};
use crate::machine::command::{Command, CommandResult, DataOp, Outcome, WriteId};
use crate::machine::Role;
use crate::proto::kv_server::Kv;
use crate::proto::{
    CasRequest, CasResponse, CloseSessionRequest, CloseSessionResponse, DeleteRequest,
    DeleteResponse, GetRequest, GetResponse, KeyValue, PutRequest, PutResponse, ScanRequest,
    ScanResponse, StatusRequest, StatusResponse,
};

/// Serves the `Kv` gRPC service from one replica.
#[derive(Clone)]
pub struct KvService {
    replica: Replica,
}

impl KvService {
    /// Serves the client API from `replica`.
    pub fn new(replica: Replica) -> KvService {
        KvService { replica }
    }

    /// Commits a data operation sent with write id `id`, stamped with this
    /// node's wall clock or the client's floor, whichever is larger (the
    /// node proposing is the leader, or the write fails).
    async fn write(
        &self,
        id: Option<crate::proto::WriteId>,
        op: DataOp,
    ) -> Result<Outcome, KvError> {
        let floor = id.as_ref().map_or(0, |id| id.floor);
        let stamp = crate::runtime::wall_clock_ms().max(floor);
        let id = id.map(|id| WriteId {
            client_id: id.client_id,
            seq: id.seq,
            opened_at: id.opened_at,
        });
        self.replica.write(Command::Data { id, op, stamp }).await
    }

    /// Sends a request about `key` to the group that serves it, through
    /// this replica's routing clients; `send` makes the call.
    async fn forward<T, F, Fut>(&self, key: &[u8], send: F) -> Result<Response<T>, Status>
    where
        F: FnMut(tonic::transport::Channel) -> Fut,
        Fut: std::future::Future<Output = Result<Response<T>, Status>>,
    {
        crate::runtime::reached(crate::runtime::Situation::RequestForwarded);
        let reply = self
            .replica
            .clients
            .with(async |client| client.call_for_key(key, send).await)
            .await?;
        Ok(Response::new(reply))
    }
}

/// Whether the request comes from a client that does not route.
fn from_thin_client<T>(request: &Request<T>) -> bool {
    !request.metadata().contains_key(ROUTED_HEADER)
}

/// Whether a thin client's request that got `answer` here goes to the
/// replica that can answer it instead.
fn to_forward<T>(thin: bool, answer: &Result<T, KvError>) -> bool {
    thin && matches!(
        answer,
        Err(KvError::WrongGroup { .. } | KvError::NotLeader { .. })
    )
}

/// A call that sends `request` with `method` on every attempt, marked as
/// routed.
macro_rules! resend {
    ($request:expr, $method:ident) => {{
        let request = $request;
        move |channel| {
            let request = request.clone();
            async move { kv(channel).$method(routed(request)).await }
        }
    }};
}

/// Answers a request with `$serve`, counting it in the node's metrics
/// under `$method`.
macro_rules! timed {
    ($self:ident, $method:literal, $serve:expr) => {{
        let started = tokio::time::Instant::now();
        let result = $serve.await;
        let outcome = result.as_ref().err().map(Status::code);
        $self
            .replica
            .metrics
            .observe_request($method, outcome, started.elapsed());
        result
    }};
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        timed!(self, "get", self.serve_get(request))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        timed!(self, "put", self.serve_put(request))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        timed!(self, "delete", self.serve_delete(request))
    }

    async fn compare_and_swap(
        &self,
        request: Request<CasRequest>,
    ) -> Result<Response<CasResponse>, Status> {
        timed!(
            self,
            "compare_and_swap",
            self.serve_compare_and_swap(request)
        )
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        timed!(self, "scan", self.serve_scan(request))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.replica.status()))
    }

    async fn close_session(
        &self,
        request: Request<CloseSessionRequest>,
    ) -> Result<Response<CloseSessionResponse>, Status> {
        timed!(self, "close_session", self.serve_close_session(request))
    }
}

impl KvService {
    async fn serve_get(
        &self,
        request: Request<GetRequest>,
    ) -> Result<Response<GetResponse>, Status> {
        let thin = from_thin_client(&request);
        let request = request.into_inner();
        check_key(&request.key)?;
        let value = match self.replica.read_barrier().await {
            Ok(()) => self.replica.state_machine.read().get(&request.key),
            Err(e) => Err(e),
        };
        if to_forward(thin, &value) {
            let key = request.key.clone();
            return self.forward(&key, resend!(request, get)).await;
        }
        Ok(Response::new(GetResponse { value: value? }))
    }

    async fn serve_put(
        &self,
        request: Request<PutRequest>,
    ) -> Result<Response<PutResponse>, Status> {
        let thin = from_thin_client(&request);
        let request = request.into_inner();
        let PutRequest { key, value, id } = request.clone();
        check_key(&key)?;
        check_value(&value)?;
        let result = self.write(id, DataOp::Put { key, value }).await;
        if to_forward(thin, &result) {
            return self
                .forward(&request.key.clone(), resend!(request, put))
                .await;
        }
        let Outcome { result, stamp } = result?;
        match result {
            CommandResult::Put => Ok(Response::new(PutResponse { stamp })),
            _ => Err(KvError::WriteIdConflict.into()),
        }
    }

    async fn serve_delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let thin = from_thin_client(&request);
        let request = request.into_inner();
        let DeleteRequest { key, id } = request.clone();
        check_key(&key)?;
        let result = self.write(id, DataOp::Delete { key }).await;
        if to_forward(thin, &result) {
            return self
                .forward(&request.key.clone(), resend!(request, delete))
                .await;
        }
        let Outcome { result, stamp } = result?;
        match result {
            CommandResult::Delete { existed } => {
                Ok(Response::new(DeleteResponse { existed, stamp }))
            }
            _ => Err(KvError::WriteIdConflict.into()),
        }
    }

    async fn serve_compare_and_swap(
        &self,
        request: Request<CasRequest>,
    ) -> Result<Response<CasResponse>, Status> {
        let thin = from_thin_client(&request);
        let request = request.into_inner();
        let CasRequest {
            key,
            expected,
            new_value,
            id,
        } = request.clone();
        check_key(&key)?;
        for value in expected.iter().chain(new_value.iter()) {
            check_value(value)?;
        }
        let op = DataOp::Cas {
            key,
            expected,
            new: new_value,
        };
        let result = self.write(id, op).await;
        if to_forward(thin, &result) {
            let key = request.key.clone();
            return self.forward(&key, resend!(request, compare_and_swap)).await;
        }
        let Outcome { result, stamp } = result?;
        match result {
            CommandResult::Cas { swapped, current } => Ok(Response::new(CasResponse {
                swapped,
                current,
                stamp,
            })),
            _ => Err(KvError::WriteIdConflict.into()),
        }
    }

    /// Closes a session in this replica's group (never forwarded: a
    /// session lives in each group the client wrote to).
    async fn serve_close_session(
        &self,
        request: Request<CloseSessionRequest>,
    ) -> Result<Response<CloseSessionResponse>, Status> {
        let CloseSessionRequest { client_id, floor } = request.into_inner();
        let stamp = crate::runtime::wall_clock_ms().max(floor);
        let command = Command::CloseSession { client_id, stamp };
        let Outcome { result, stamp } = self.replica.write(command).await?;
        let closed = result == CommandResult::SessionClosed(true);
        Ok(Response::new(CloseSessionResponse { closed, stamp }))
    }

    async fn serve_scan(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<ScanResponse>, Status> {
        let thin = from_thin_client(&request);
        let ScanRequest {
            start,
            end,
            limit,
            shards,
        } = request.into_inner();
        let sharded = !matches!(self.replica.state_machine.read().role, Role::Standalone);
        let every_shard = thin && sharded && shards.is_empty();
        let barrier = match every_shard {
            true => Ok(()),
            false => self.replica.read_barrier().await,
        };
        if every_shard || to_forward(thin, &barrier) {
            let entries = self
                .replica
                .clients
                .with(async |client| client.scan(start, end, limit).await)
                .await?;
            let entries = entries
                .into_iter()
                .map(|(key, value)| KeyValue { key, value })
                .collect();
            return Ok(Response::new(ScanResponse {
                entries,
                served: Vec::new(),
            }));
        }
        barrier?;
        let part = self
            .replica
            .state_machine
            .read()
            .scan(&start, &end, limit, &shards)?;
        let entries = part
            .entries
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect();
        Ok(Response::new(ScanResponse {
            entries,
            served: part.served,
        }))
    }
}
