"""The development harness: the Graph stand-in, the local broker and Samba AD DC, and the pipeline
runner behind `e2ad up`. Production runs none of it; no stage imports it."""
