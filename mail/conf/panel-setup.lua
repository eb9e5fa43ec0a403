-- Managed by the hosting panel ("Prepare for mail"): changes here are reported as drift and undone.
-- OpenDKIM's setup hook (SetupPolicyScript): sign only what the sender may send.
-- * Logged in on submission ({auth_authen}): every address in the header From must be one
--   the login may send as (SENDERS: "login>address" and "login>@domain" lines, rendered
--   from the panel's senders map); otherwise panel-final.lua refuses the message (550).
-- * The sendmail binary ({daemon_name} LOCAL): Postfix already held the envelope sender
--   ({mail_addr}) to what the UNIX login may use (local_login_sender_maps). Signed by its
--   single header From when that From's domain is the envelope's, or the envelope is one
--   only root and the vmail user may use (empty: auto-replies; their own names); anything
--   else (a site's mail() with another domain's From) is refused by panel-final.lua.
-- * Anything else (port 25, even from 127.0.0.1 or mynetworks) is verified, never signed:
--   opendkim.conf names no internal host, only the MTAs ORIGINATING and LOCAL sign.
local SENDERS = "{{senders}}"
local TRUSTED = {
  [""] = true, ["<>"] = true, ["root"] = true, ["root@{{hostname}}"] = true,
  ["{{vmail_user}}"] = true, ["{{vmail_user}}@{{hostname}}"] = true,
}
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
    -- Only root and the vmail user may use an empty envelope or their own name (the map).
    local envelope = string.lower(odkim.get_mtasymbol(ctx, "{mail_addr}") or "")
    if from ~= nil and not single and not TRUSTED[envelope] then
      odkim.export(ctx, "panel_refused", "(not one address)", "panel_user", envelope)
    elseif single then
      local domain = string.match(found[1], "@(.*)$")
      if TRUSTED[envelope] or string.match(envelope, "@(.*)$") == domain then
        odkim.signfor(ctx, found[1])
      else
        odkim.export(ctx, "panel_refused", found[1], "panel_user", envelope)
      end
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
