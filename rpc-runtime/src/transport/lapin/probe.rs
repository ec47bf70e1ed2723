//! A queue's consumer count, from a passive `queue.declare`.

use super::{AmqpError, link::Link};
pub(crate) use crate::transport::shared::QueueState;
use lapin::{
    Channel,
    options::{BasicQosOptions, QueueDeclareOptions},
    types::FieldTable,
};
use std::{future::Future, pin::Pin};

/// A channel being opened, for as long as it takes: a question given up
/// meanwhile leaves it to the next one.
type Opening = Pin<Box<dyn Future<Output = lapin::Result<Channel>> + Send>>;

/// A channel to ask questions on. A passive declare of a queue that does
/// not exist closes its channel: the next question opens another.
///
/// A question may be given up at any point (its caller's patience ran
/// out), and while the broker does not read (a resource alarm) every one
/// is. So what a question leaves half-done is taken up by the next one,
/// never begun again beside it:
///
/// | given up while | left | the next question |
/// |---|---|---|
/// | the channel opens | the opening | waits for that opening (before, each question opened one more channel: lapin keeps a channel whose handles are dropped, so each stayed open on the broker) |
/// | the declare is answered | `asking` | asks for a round trip behind the declare's answer (`basic.qos`, which changes nothing on a channel without consumers): answered, the channel is fine and is asked again; refused, the declare's answer closed it (404: the queue does not exist), and a new one is opened. Before, the channel was closed then, and a `channel.close` crossing the broker's 404 made lapin drop the whole connection |
#[derive(Default)]
pub(crate) struct ProbeChannel {
    channel: Option<Channel>,
    opening: Option<Opening>,
    /// A question was given up before the declare's answer: it may still
    /// come.
    asking: bool,
}

impl ProbeChannel {
    /// How many consumers `queue` has, or why it has none to tell.
    pub(crate) async fn consumers(
        &mut self,
        link: &Link,
        queue: &str,
    ) -> Result<QueueState, AmqpError> {
        if self.asking {
            if let Some(channel) = self.channel.clone()
                && channel
                    .basic_qos(0, BasicQosOptions::default())
                    .await
                    .is_err()
            {
                self.channel = None;
            }
            self.asking = false;
        }
        let channel = match self.channel.as_ref() {
            Some(open) if open.status().connected() => open.clone(),
            _ => {
                let amqp = link.amqp.clone();
                let opening = self
                    .opening
                    .get_or_insert_with(|| Box::pin(async move { amqp.create_channel().await }));
                let opened = opening.as_mut().await;
                self.opening = None;
                self.channel.insert(opened?).clone()
            }
        };
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        self.asking = true;
        let answer = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await;
        self.asking = false;
        match answer {
            Ok(declared) => Ok(QueueState::Consumers(declared.consumer_count())),
            Err(error) => QueueState::refused(AmqpError::from(error)),
        }
    }

    /// Closes the channel, if one is open.
    pub(crate) async fn close(&mut self) {
        if let Some(channel) = self.channel.take() {
            let _ = channel.close(200, "session over".into()).await;
        }
    }
}
