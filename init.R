# Heroku's R buildpack (app.json, before Python's) runs this at build time: the R packages the R models need.
if (!requireNamespace("jsonlite", quietly = TRUE)) install.packages("jsonlite", clean = TRUE, quiet = TRUE)
