# Start a child process, report progress, then never end (tests): whatever ends the task must kill both.
system("sleep 3599", wait = FALSE)
message("PROGRESS 10 waiting forever")
Sys.sleep(3600)
