from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("dns", "0001_initial")]

    operations = [
        migrations.RemoveConstraint(model_name="publishedrrset", name="dns_published_once"),
        migrations.RemoveField(model_name="publishedrrset", name="zone"),
        migrations.AddField(
            model_name="publishedrrset",
            name="zone_name",
            field=models.CharField(default="", max_length=253),
            preserve_default=False,
        ),
        migrations.AddConstraint(
            model_name="publishedrrset",
            constraint=models.UniqueConstraint(
                fields=("nameserver", "zone_name", "name", "type"), name="dns_published_once"
            ),
        ),
    ]
