//! Chaos tooling for fixit-edge (see the chaos issue); empty until then.
