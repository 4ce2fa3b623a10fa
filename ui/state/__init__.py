"""Widget state: the control table, links, the sidebar, the selection it makes, language, lecture mode
and the page table. Draws widgets; computes nothing."""
