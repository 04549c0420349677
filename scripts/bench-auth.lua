-- wrk script for the authentication variants of scripts/bench.sh: every request
-- carries another credential, round-robin over a file of them.
--
--   wrk -s scripts/bench-auth.lua URL -- FILE HEADER PREFIX THREADS
--
-- FILE holds one credential per line; each request sends `HEADER: PREFIX<line>`
-- (PREFIX may be "", e.g. "Bearer " for tokens). Thread i of THREADS starts at
-- line i * count / THREADS, so the threads walk different parts of the file.
-- Every request is formatted once in init(): request() only picks the next one,
-- which keeps wrk's cost per request close to that of a plain run.

local requests, count, index = {}, 0, 0
local threads = 0

function setup(thread)
   thread:set("thread_no", threads)
   threads = threads + 1
end

function init(args)
   local file, header, prefix, nthreads = args[1], args[2], args[3] or "", tonumber(args[4]) or 1
   assert(file and header, "usage: wrk -s bench-auth.lua URL -- FILE HEADER [PREFIX [THREADS]]")
   local f = assert(io.open(file, "r"))
   for line in f:lines() do
      if line ~= "" then
         count = count + 1
         requests[count] = wrk.format(nil, nil, { [header] = prefix .. line })
      end
   end
   f:close()
   assert(count > 0, "no credentials in " .. file)
   index = math.floor((thread_no or 0) * count / nthreads) % count
end

function request()
   index = index % count + 1
   return requests[index]
end
