cat(1)
