-- (a) the naive design: one transaction per redemption (debit one allowance row, append one journal row).
\set holder random(1, 1000000)
BEGIN;
UPDATE allowances SET used_qty = used_qty + 1000, last_redeemed_at = now()
  WHERE id = :holder AND used_qty + held_qty + 1000 <= granted_qty;
INSERT INTO journal (entry_id, kind, result, allowance_id, holder_type, holder_id, product_code,
                     quantity_qty, price_minor, payload_hash, created_at)
  VALUES (gen_random_uuid()::text, 'redeem', 'ok', :holder, 'family', :holder, 'gasoline',
          1000, 750, md5(:holder::text), now());
END;
