# Persistent bash REPL run inside the sandbox (passed to `bash --norc --noprofile -c`).
#
# Protocol (see drivers.py): one request per line, "<token> <code>", where the code has
# backslashes doubled and newlines written as \n (decoded by the printf %b builtin, so no
# fork is needed). The code runs with `eval` in this very shell, so cd, export, variables,
# functions and aliases persist. Then we print "\n__SB_END_<token>__ <status>\n".
#
# SIGINT (sent by the host on timeout) kills the foreground command; the trap keeps this
# shell alive and the rest of the chunk continues. A pure-builtin loop cannot be
# interrupted this way: the host then kills the session (see drivers.py).

# Protocol on fd 3 only; user commands read /dev/null, so `cat` cannot eat requests.
exec 3<&0 0</dev/null
trap ':' INT
printf '__SB_READY__ %s\n' "$$"
while IFS= read -r -u 3 __sb_req; do
  __sb_tok=${__sb_req%% *}
  printf -v __sb_code '%b' "${__sb_req#* }"
  eval "$__sb_code" 3<&-
  __sb_st=$?
  printf '\n__SB_END_%s__ %d\n' "$__sb_tok" "$__sb_st"
done
exit 0
