"""What frames every page: the shared sidebar (the controls, the cost line, the share link) and the
lecture stepper. The top of ui/: it reads the state, the content and the compute boundary."""
