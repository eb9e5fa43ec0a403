-- Managed by the hosting panel ("Prepare for mail"): changes here are reported as drift and undone.
-- OpenDKIM's setup hook (SetupPolicyScript): sign only what the sender may send.
-- * Logged in on submission ({auth_authen}): every address in the header From must be one
--   the login may send as (SENDERS: "login>address" and "login>@domain" lines, rendered
--   from the panel's senders map); otherwise panel-final.lua refuses the message (550).
-- * The sendmail binary ({daemon_name} LOCAL; only root and the vmail user may submit):
--   signed by the header From's domain.
-- * Anything else (port 25, even from mynetworks) is verified, never signed.
local SENDERS = "{{senders}}"
local PATTERN = "[^%s<>,;:\"()%[%]\\]+@[^%s<>,;:\"()%[%]\\]+"

local function addresses(value)
  local out = {}
  for address in string.gmatch(value, PATTERN) do
    out[#out + 1] = string.lower(address)
  end
  return out
end

local user = odkim.get_mtasymbol(ctx, "{auth_authen}")
local from = odkim.get_header(ctx, "From", 0)
local found = {}
if from ~= nil then
  found = addresses(from)
end
local single = from ~= nil and odkim.get_header(ctx, "From", 1) == nil and #found == 1

if user == nil or user == "" then
  if odkim.get_mtasymbol(ctx, "{daemon_name}") == "LOCAL" then
    if single then
      odkim.signfor(ctx, found[1])
    end
  else
    odkim.verify(ctx)
  end
  return nil
end

user = string.lower(user)
if from == nil then
  return nil -- nothing to sign as
end
local refused = nil
if odkim.get_header(ctx, "From", 1) ~= nil then
  refused = "(a second From)"
elseif #found == 0 then
  refused = "(no address)"
else
  local opened, db = pcall(odkim.db_open, "file:" .. SENDERS)
  if not opened then -- (not written yet): try again later rather than sign or refuse
    odkim.export(ctx, "panel_tempfail", "1")
    return nil
  end
  for _, address in ipairs(found) do
    local domain = string.match(address, "@(.*)$")
    if odkim.db_check(db, user .. ">" .. address) ~= 1
        and odkim.db_check(db, user .. ">@" .. domain) ~= 1 then
      refused = address
      break
    end
  end
  odkim.db_close(db)
end
if refused ~= nil then
  odkim.export(ctx, "panel_refused", refused, "panel_user", user)
  return nil
end
odkim.signfor(ctx, found[1])
return nil
