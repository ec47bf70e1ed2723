//! A queue's consumer count, from a passive `queue.declare`.

use super::{AmqpChannel, AmqpError, link::Link, properties};
pub(crate) use crate::transport::shared::QueueState;
use amqprs::channel::QueueDeclareArguments;
use std::{future::Future, pin::Pin};

/// A channel being opened, for as long as it takes.
type Opening = Pin<Box<dyn Future<Output = Result<AmqpChannel, AmqpError>> + Send>>;

/// A channel to ask questions on. A passive declare of a queue that does
/// not exist closes its channel: the next question opens another.
///
/// A question given up while its channel opens leaves the opening to the
/// next question, which waits for it rather than open another: while the
/// broker does not read (a resource alarm) every question is given up
/// there, and each opened one more channel, until amqprs ran out of
/// channel numbers and its reader task panicked, leaving the connection
/// open and dead.
#[derive(Default)]
pub(crate) struct ProbeChannel {
    channel: Option<AmqpChannel>,
    opening: Option<Opening>,
    /// A question is being asked: if it is still set when the next one
    /// comes, that one was given up half-way, and its answer may still
    /// come. amqprs keeps one waiter per kind of answer on a channel, so a
    /// second declare there would take the first one's answer, and the
    /// second answer, finding no waiter, would fail the channel's task (and
    /// the connection with it): the next question gets a new channel.
    asking: bool,
}

impl ProbeChannel {
    /// How many consumers `queue` has, or why it has none to tell.
    pub(crate) async fn consumers(
        &mut self,
        link: &Link,
        queue: &str,
    ) -> Result<QueueState, AmqpError> {
        properties::short(queue, "queue name")
            .map_err(|error| AmqpError::other(error.to_string()))?;
        if std::mem::take(&mut self.asking) {
            // Dropped: amqprs closes it (after the answer no one waits for).
            self.channel = None;
        }
        // Kept in place while asking (a clone is a handle): a question given
        // up half-way leaves the channel to be closed, not to a leak.
        let channel = match self.channel.as_ref() {
            Some(open) if open.is_open() => open.clone(),
            _ => {
                let link = link.clone();
                let opening = self
                    .opening
                    .get_or_insert_with(|| Box::pin(async move { AmqpChannel::open(&link).await }));
                let opened = opening.as_mut().await;
                self.opening = None;
                self.channel.insert(opened?).clone()
            }
        };
        let passive = QueueDeclareArguments::new(queue).passive(true).finish();
        self.asking = true;
        let asking = channel.amqp().clone();
        let answer = channel
            .ask(async move { asking.queue_declare(passive).await })
            .await;
        self.asking = false;
        match answer {
            Ok(Some((_, _, consumers))) => Ok(QueueState::Consumers(consumers)),
            // Only with `no_wait`, which is not asked for.
            Ok(None) => Err(AmqpError::other("no queue.declare-ok to a passive declare")),
            Err(error) => QueueState::refused(channel.error(error)),
        }
    }

    /// Closes the channel, if one is open.
    pub(crate) async fn close(&mut self) {
        if let Some(channel) = self.channel.take() {
            channel.close("session over").await;
        }
    }
}
