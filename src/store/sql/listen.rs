//! PostgreSQL's change notices: `LISTEN` on the channel every committed change `NOTIFY`s
//! ([`CHANGES_CHANNEL`]), on a connection of its own outside the pool.

use async_trait::async_trait;
use sqlx::postgres::PgListener;

use crate::store::{CHANGES_CHANNEL, ChangeNotices, Notice, StoreError};

pub(super) struct PgNotices(PgListener);

impl PgNotices {
    pub(super) async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Self(listener))
    }
}

#[async_trait]
impl ChangeNotices for PgNotices {
    async fn next(&mut self) -> Result<Notice, StoreError> {
        match self.0.try_recv().await? {
            Some(_) => Ok(Notice::Changed),
            // sqlx has made the connection again already.
            None => Ok(Notice::Reconnected),
        }
    }
}
