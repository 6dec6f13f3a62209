# Ensemble Kalman filter (EnKF) estimate of the time-varying reproduction number R(t) from daily case counts.
#
# Usage: Rscript --vanilla models/enkf.R params.json
# Params (validated by the service against models/enkf.json): cases (daily counts), population,
# ensemble (default 300), generation_days (default 5), seed (optional; drawn at random and reported if absent).
# Output: one JSON value on stdout, {"days", "seed", "rt": [{low, median, high}], "incidence": [...]},
# the 5th/50th/95th percentiles of the filtered (posterior) ensemble on each day.
# Progress: "PROGRESS <percent> <message>" lines on stderr.
#
# Model
# - State of each member on day t: x = log R(t), the incidence I(t) and its history I(t-1..t-L), and the
#   susceptibles S(t). Only [log R(t), I(t)] is updated by the day-t count; earlier days are kept as filtered.
# - Generation interval: gamma with shape 2 (coefficient of variation 0.71) and mean `generation_days`,
#   discretised on days s = 1..L as w_s = F(s + 0.5) - F(s - 0.5) (day 1 also takes the mass of (0, 0.5]),
#   truncated at its 99.9% quantile L and renormalised.
# - Process model (renewal equation, Fraser 2007; Cori et al. 2013):
#   log R(t) = log R(t-1) + N(0, 0.05^2) (random walk), then multiplicative inflation of the log R anomalies
#   by 1.02 around the ensemble mean (against collapse of the spread), clamped to R in [0.01, 20];
#   lambda(t) = R(t) * S(t-1)/N * sum_s w_s I(t-s) + 0.1 (a small importation rate, so an ensemble
#   whose incidence is 0 can restart); I(t) ~ Poisson(lambda(t)), capped at S(t-1); S(t) = S(t-1) - I(t).
#   R(t) is thus the reproduction number in a fully susceptible population; the effective one is R(t) S/N.
# - Observation model and reporting assumption: every infection is reported on the day it occurs (no delay,
#   reporting fraction 1): cases(t) = I(t) + e, e ~ N(0, 2 * max(cases(t), 1) + 1) (overdispersed noise).
# - Update: stochastic (perturbed-observation) EnKF (Evensen 2003; Burgers et al. 1998) of [log R(t), I(t)]
#   with the ensemble covariances; the updated incidence is clipped to [0, S(t-1)].
# - Initialisation: log R ~ N(log 1.5, 0.5^2); the incidence before day 1 is the log-linear trend of the first
#   14 counts extrapolated backwards (growth rate clamped to [-0.2, 0.3] per day, values to [0.5, 3 max count]),
#   times a lognormal factor exp(N(0, 0.5^2)) per member; S(0) = N.
# EnKF applied to R(t): e.g. Engbert et al. 2021, "Sequential data assimilation of the stochastic SEIR
# epidemic model for regional COVID-19 dynamics", Bull. Math. Biol. 83:1.
#
# Vectorised over members: the loop runs over days only.

RW_SD <- 0.05 # daily random-walk step of log R
INFLATION <- 1.02 # multiplicative inflation of the log R anomalies, every day
OBS_OVERDISPERSION <- 2 # observation variance = OBS_OVERDISPERSION * max(cases, 1) + OBS_FLOOR
OBS_FLOOR <- 1
IMPORTS <- 0.1 # expected imported infections per day
GI_SHAPE <- 2 # shape of the gamma generation interval
LOG_R_MIN <- log(0.01)
LOG_R_MAX <- log(20)

progress <- function(percent, text) {
  cat(sprintf("PROGRESS %d %s\n", as.integer(percent), text), file = stderr())
  flush(stderr())
}

get_param <- function(params, key, default) {
  if (is.null(params[[key]])) default else params[[key]]
}

generation_weights <- function(mean_days) {
  scale <- mean_days / GI_SHAPE
  max_lag <- max(2L, as.integer(ceiling(qgamma(0.999, shape = GI_SHAPE, scale = scale))))
  s <- seq_len(max_lag)
  w <- pgamma(s + 0.5, shape = GI_SHAPE, scale = scale) - pgamma(pmax(s - 0.5, 0), shape = GI_SHAPE, scale = scale)
  w[1] <- pgamma(1.5, shape = GI_SHAPE, scale = scale)
  w / sum(w)
}

# Incidence on days 0, -1, ..., 1 - L (element s is day 1 - s): the log-linear trend of the first two weeks
# of counts carried back, kept between 0.5 and 3 times the largest of those counts.
prehistory <- function(cases, L) {
  k <- min(14L, length(cases))
  first <- cases[seq_len(k)]
  fit <- lm.fit(cbind(1, seq_len(k) - 1), log(first + 0.5))$coefficients
  growth <- min(max(fit[2], -0.2), 0.3)
  level <- exp(fit[1] - growth * seq_len(L))
  top <- max(first, 1)
  pmin(pmax(level, 0.5), 3 * top)
}

bands <- function(x) {
  q <- quantile(x, c(0.05, 0.5, 0.95), names = FALSE, type = 7)
  c(low = q[1], median = q[2], high = q[3])
}

main <- function(args) {
  if (length(args) != 1) stop("usage: Rscript --vanilla models/enkf.R <params.json>")
  params <- jsonlite::fromJSON(args[1], simplifyVector = TRUE)
  cases <- as.numeric(unlist(params$cases))
  n_days <- length(cases)
  if (n_days < 1 || any(!is.finite(cases)) || any(cases < 0)) stop("cases must be non-negative numbers")
  N <- as.numeric(params$population)
  m <- as.integer(get_param(params, "ensemble", 300L))
  gen_days <- as.numeric(get_param(params, "generation_days", 5))
  seed <- params$seed
  if (is.null(seed)) seed <- sample.int(.Machine$integer.max, 1L) - 1L
  seed <- as.integer(seed)
  set.seed(seed, kind = "Mersenne-Twister", normal.kind = "Inversion", sample.kind = "Rejection")

  w <- generation_weights(gen_days)
  L <- length(w)

  # Members are rows; hist is a ring buffer: column ((d - 1) mod L) + 1 holds I(d), so on day t the weight
  # vector w_now puts w_s on the column of I(t - s) and the column of I(t - L) is then overwritten by I(t).
  lags <- seq_len(L)
  log_r <- rnorm(m, log(1.5), 0.5)
  hist <- matrix(0, m, L)
  hist[, ((0L - lags) %% L) + 1L] <- outer(exp(rnorm(m, 0, 0.5)), prehistory(cases, L))
  S <- rep(N, m)
  w_now <- numeric(L)

  rt <- matrix(0, n_days, 3, dimnames = list(NULL, c("low", "median", "high")))
  inc <- rt
  every <- max(1L, n_days %/% 40L)
  progress(0, sprintf("start: %d days, %d members", n_days, m))

  for (t in seq_len(n_days)) {
    # Forecast.
    log_r <- log_r + rnorm(m, 0, RW_SD)
    log_r <- mean(log_r) + INFLATION * (log_r - mean(log_r))
    log_r <- pmin(pmax(log_r, LOG_R_MIN), LOG_R_MAX)
    w_now[((t - lags - 1L) %% L) + 1L] <- w
    lambda <- exp(log_r) * (S / N) * drop(hist %*% w_now) + IMPORTS
    incid <- pmin(as.numeric(rpois(m, lambda)), S)

    # Perturbed-observation update of [log R, I] with the observation I + noise.
    obs_var <- OBS_OVERDISPERSION * max(cases[t], 1) + OBS_FLOOR
    y <- cases[t] + rnorm(m, 0, sqrt(obs_var))
    da <- incid - mean(incid)
    var_i <- sum(da * da) / (m - 1)
    cov_r <- sum((log_r - mean(log_r)) * da) / (m - 1)
    innov <- (y - incid) / (var_i + obs_var)
    log_r <- pmin(pmax(log_r + cov_r * innov, LOG_R_MIN), LOG_R_MAX)
    incid <- pmin(pmax(incid + var_i * innov, 0), S)

    S <- S - incid
    hist[, ((t - 1L) %% L) + 1L] <- incid
    rt[t, ] <- bands(exp(log_r))
    inc[t, ] <- bands(incid)
    if (t %% every == 0L && t < n_days) progress(100 * t / n_days, sprintf("day %d of %d", t, n_days))
  }

  if (any(!is.finite(rt)) || any(!is.finite(inc))) stop("the filter produced non-finite values")
  out <- list(days = n_days, seed = seed, rt = as.data.frame(rt), incidence = as.data.frame(inc))
  progress(100, sprintf("done: %d days", n_days))
  cat(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA), "\n", sep = "")
}

main(commandArgs(trailingOnly = TRUE))
