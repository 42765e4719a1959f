//! The training progress bar (indicatif, on stderr): one bar over all training steps showing
//! the epoch, the running training loss and the last validation loss, and one line per finished
//! epoch above it. Drawn only when asked and stderr is a terminal; otherwise nothing at all is
//! written, so `--json` runs and pipes keep stderr quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::train::{EpochReport, StepReport, TrainObserver};

/// A [`TrainObserver`] that draws a progress bar, or stays silent.
pub struct TrainBar {
    bar: ProgressBar,
    visible: bool,
    last_val: Option<f64>,
    /// Running mean of this epoch's step losses.
    sum: f64,
    count: usize,
    label: String,
}

impl TrainBar {
    /// A bar over all training steps (its length is set by the first step), drawn if `show`
    /// and stderr is a terminal. `label` names the run (e.g. the preset) in front of the bar.
    pub fn new(show: bool, label: &str) -> Self {
        let visible = show && std::io::stderr().is_terminal();
        let bar = if visible {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:28}] {pos}/{len} steps  {msg}  {elapsed} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        TrainBar {
            bar,
            visible,
            last_val: None,
            sum: 0.0,
            count: 0,
            label: label.to_string(),
        }
    }

    /// Whether anything is drawn.
    pub fn visible(&self) -> bool {
        self.visible
    }

    /// The bar's message for the current state.
    pub fn message(&self, epoch: usize, epochs: usize) -> String {
        let loss = if self.count > 0 {
            format!("{:.4}", self.sum / self.count as f64)
        } else {
            "-".into()
        };
        let val = self
            .last_val
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into());
        format!("epoch {epoch}/{epochs}  loss {loss}  val {val}")
    }

    /// Remove the bar (the epoch lines stay).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl TrainObserver for TrainBar {
    fn step(&mut self, s: &StepReport) {
        if s.step == 1 {
            self.sum = 0.0;
            self.count = 0;
        }
        self.sum += s.loss;
        self.count += 1;
        // positions count from the first epoch, so a resumed run shows the steps already done
        self.bar.set_length((s.epochs * s.steps_per_epoch) as u64);
        self.bar
            .set_position(((s.epoch - 1) * s.steps_per_epoch + s.step) as u64);
        self.bar.set_message(self.message(s.epoch, s.epochs));
    }

    fn epoch(&mut self, e: &EpochReport) {
        self.last_val = Some(e.val_loss);
        if self.visible {
            self.bar.println(format!(
                "{} epoch {}/{}  loss {:.4}  val {:.4}{}  lr {:.2e}  {:.1}s",
                self.label,
                e.epoch,
                e.epochs,
                e.train_loss,
                e.val_loss,
                if e.improved { " *" } else { "" },
                e.lr,
                e.seconds
            ));
        }
        self.bar.set_message(self.message(e.epoch, e.epochs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoo_train_bar_tracks_loss_and_val_and_hides_when_asked() {
        let mut b = TrainBar::new(false, "t");
        assert!(!b.visible());
        assert_eq!(b.message(1, 2), "epoch 1/2  loss -  val -");
        for (k, l) in [1.0, 3.0].into_iter().enumerate() {
            b.step(&StepReport {
                epoch: 1,
                epochs: 2,
                step: k + 1,
                steps_per_epoch: 2,
                loss: l,
                lr: 1e-3,
            });
        }
        assert_eq!(b.message(1, 2), "epoch 1/2  loss 2.0000  val -");
        assert_eq!(b.bar.position(), 2);
        assert_eq!(b.bar.length(), Some(4));
        b.epoch(&EpochReport {
            epoch: 1,
            epochs: 2,
            train_loss: 2.0,
            val_loss: 0.5,
            lr: 1e-3,
            improved: true,
            seconds: 0.1,
        });
        // a new epoch restarts the running mean and keeps the last validation loss
        b.step(&StepReport {
            epoch: 2,
            epochs: 2,
            step: 1,
            steps_per_epoch: 2,
            loss: 0.25,
            lr: 1e-3,
        });
        assert_eq!(b.message(2, 2), "epoch 2/2  loss 0.2500  val 0.5000");
        b.finish();
    }
}
