//! Cluster links between fixit-edge nodes (see the cluster issue); empty until then.
