//! Queue administration around the measurements (never measured itself).

use rpc_runtime::lapin::{
    Channel, Connection, ConnectionProperties,
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A connection for declaring, counting and deleting queues.
pub(crate) struct Admin {
    _connection: Connection,
    channel: Channel,
}

impl Admin {
    pub(crate) async fn connect(url: &str) -> Result<Self, Error> {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        Ok(Self {
            _connection: connection,
            channel,
        })
    }

    /// A queue that nobody consumes, deleted with this connection.
    pub(crate) async fn declare_parking(&self) -> Result<String, Error> {
        let name = format!("bench.parking.{}", uuid::Uuid::new_v4().simple());
        self.channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(name)
    }

    /// Waits until `queue` holds `count` messages.
    pub(crate) async fn wait_for_messages(&self, queue: &str, count: usize) -> Result<(), Error> {
        for _ in 0..6000 {
            let declared = self
                .channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            if declared.message_count() as usize >= count {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(format!("{queue} never held {count} messages").into())
    }

    pub(crate) async fn delete(&self, queues: &[String]) -> Result<(), Error> {
        for queue in queues {
            self.channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}
