//! The client API: validates requests, sends writes through the Raft log and
//! serves linearizable reads from the state machine.

use tonic::{Request, Response, Status};

use super::replica::Replica;
use crate::error::KvError;
use crate::limits::{check_key, check_value};
use crate::machine::command::{Command, CommandResult, DataOp, WriteId};
use crate::proto::kv_server::Kv;
use crate::proto::{
    CasRequest, CasResponse, DeleteRequest, DeleteResponse, GetRequest, GetResponse, KeyValue,
    PutRequest, PutResponse, ScanRequest, ScanResponse, StatusRequest, StatusResponse,
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

    /// Commits a data operation sent with write id `id`.
    async fn write(
        &self,
        id: Option<crate::proto::WriteId>,
        op: DataOp,
    ) -> Result<CommandResult, KvError> {
        let id = id.map(|id| WriteId {
            client_id: id.client_id,
            seq: id.seq,
        });
        self.replica.write(Command::Data { id, op }).await
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let GetRequest { key } = request.into_inner();
        check_key(&key)?;
        self.replica.read_barrier().await?;
        let value = self.replica.state_machine.read().get(&key)?;
        Ok(Response::new(GetResponse { value }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let PutRequest { key, value, id } = request.into_inner();
        check_key(&key)?;
        check_value(&value)?;
        match self.write(id, DataOp::Put { key, value }).await? {
            CommandResult::Put => Ok(Response::new(PutResponse {})),
            _ => Err(KvError::WriteIdConflict.into()),
        }
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let DeleteRequest { key, id } = request.into_inner();
        check_key(&key)?;
        match self.write(id, DataOp::Delete { key }).await? {
            CommandResult::Delete { existed } => Ok(Response::new(DeleteResponse { existed })),
            _ => Err(KvError::WriteIdConflict.into()),
        }
    }

    async fn compare_and_swap(
        &self,
        request: Request<CasRequest>,
    ) -> Result<Response<CasResponse>, Status> {
        let CasRequest {
            key,
            expected,
            new_value,
            id,
        } = request.into_inner();
        check_key(&key)?;
        for value in expected.iter().chain(new_value.iter()) {
            check_value(value)?;
        }
        let op = DataOp::Cas {
            key,
            expected,
            new: new_value,
        };
        match self.write(id, op).await? {
            CommandResult::Cas { swapped, current } => {
                Ok(Response::new(CasResponse { swapped, current }))
            }
            _ => Err(KvError::WriteIdConflict.into()),
        }
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let ScanRequest {
            start,
            end,
            limit,
            shards,
        } = request.into_inner();
        self.replica.read_barrier().await?;
        let part = self
            .replica
            .state_machine
            .read()
            .scan(&start, &end, limit, &shards);
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

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.replica.status()))
    }
}
