//! Subnet 50 (Synth): everything that defines "good" exactly as the validator does.
