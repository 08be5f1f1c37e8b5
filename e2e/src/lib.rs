//! The Signpost lab: routers in Linux network namespaces joined by veth pairs, the operator in
//! local mode, real traffic and link cuts. It arrives with the lab issue; this crate holds its
//! place in the workspace so that the layout is the one DESIGN.md describes.
